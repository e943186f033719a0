"""The head-only folder's file names, format version, card name and error class: shared by the format, its
validation and the Hub I/O."""

from __future__ import annotations

from pathlib import Path

from .._io import PREVIOUS
from ..modeling.errors import HfBridgesError

# 2: the aligned component (aligned / aligned_dim / component_dropout; the map's buffers in the weights). Heads of
#    format 1 lack those keys and read them as the head's LEGACY_DEFAULTS (no aligned component). Later keys of
#    format 2: combine (absent: "concat", the first aligned heads) and alignment (the attach record of a stitched head).
# 3: an alignment set (relative_anchors < num_anchors: the anchors after the first relative_anchors only fit the
#    aligned map). Written only by heads that have one, so heads without it stay readable by format-2 releases.
HEAD_FORMAT_VERSION = 3
PLAIN_HEAD_FORMAT = 2  # what a head without an alignment set is written as
CONFIG_NAME = "bridge_head_config.json"
WEIGHTS_NAME = "bridge_head.safetensors"
ANCHORS_NAME = "anchors.parquet"
ANCHOR_SPACE_NAME = "anchor_space.safetensors"
CARD_NAME = "README.md"
HEAD_CARD_NAME = "bridge_head_card.md"  # the head's card in a folder shared with a full model
DATA_FILES = (WEIGHTS_NAME, ANCHORS_NAME, ANCHOR_SPACE_NAME)
HEAD_FILES = (CONFIG_NAME, *DATA_FILES)


class HeadFormatError(HfBridgesError, ValueError):
    """A folder or repo that is not a readable bridge head; the message names the problem and the fix."""


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hf_bridges")
    except PackageNotFoundError:
        return "unknown"


def head_card_name(folder: Path) -> str:
    """``README.md`` in a head's own folder; ``bridge_head_card.md`` in a folder shared with other files (a full
    model), so ``save_head`` never overwrites that folder's own card."""
    own = set(HEAD_FILES) | {CARD_NAME, HEAD_CARD_NAME, PREVIOUS}
    if folder.is_dir() and not {p.name for p in folder.iterdir()} <= own:
        return HEAD_CARD_NAME
    return CARD_NAME
