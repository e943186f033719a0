"""Zero-shot stitching benchmark: heads trained on one encoder's cached embeddings, scored on every encoder.

Modules, one job each: ``config`` (YAML schema and checks), ``encoders`` (encoder-kind registry), ``cache``
(Arrow embedding cache), ``training`` (Accelerate head training), ``evaluation`` (attach-time subspace choice,
metrics), ``report`` (tables, JSON, heatmaps), ``runner`` (the whole run).
"""

from .config import ConfigError, StitchConfig, load_config, parse_config
from .encoder_kinds import ENCODER_KINDS, register_encoder_kind
from .runner import run_stitch

__all__ = [
    "ENCODER_KINDS",
    "ConfigError",
    "StitchConfig",
    "load_config",
    "parse_config",
    "register_encoder_kind",
    "run_stitch",
]
