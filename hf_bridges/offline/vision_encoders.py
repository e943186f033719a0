"""Registers the packaged EfficientNet-Lite variants as module encoders (``kind: module_image``, id
``efficientnet-lite0``...).

Its own module because the registry lives in ``module_bridges.encoders``, which imports torch: ``hf_bridges.offline``
is imported by the CLI's light commands (``--help``, ``--version``, ``info``), which must not pay for it. The stitch
benchmark's ``module_image`` kind imports this module before it looks a name up.
"""

from __future__ import annotations

from ..module_bridges.encoders import register_module_encoder
from .vision import EFFICIENTNET_LITE, efficientnet_lite

for _variant in EFFICIENTNET_LITE:
    register_module_encoder(_variant)(lambda size=None, _v=_variant: efficientnet_lite(_v, size=size))
