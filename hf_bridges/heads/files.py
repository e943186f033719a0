"""The head-only folder's file names, format version, card name and error class: shared by the format, its
validation and the Hub I/O."""

from __future__ import annotations

import os
from pathlib import Path

from .._io import PREVIOUS
from ..modeling.registry import HfBridgesError

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
MODALITIES = ("features", "image", "text")

# Bounds on what a head's files may hold, the same for save_head, validation and attach (docs/heads-and-hub.md):
MAX_ANCHORS = 1 << 16  # anchors per head: the attach's memory is linear in this (a stitch report is chunked)
CHARS_PER_TOKEN = 64  # a generous bound: natural text averages 3-6 characters per token in every tokenizer we use
MIN_TOKENS = 512  # the tokenizer fingerprint reads up to 512 tokens of each anchor, whatever max_seq_length is
MAX_IMAGE_BYTES = 4 << 20  # one anchor image (PNG bytes): a 1024 x 1024 RGB image stored raw is 3 MiB
MAX_FEATURES_BYTES = 8 << 16  # one feature-vector anchor: up to 2^16 float64 values
MAX_CONFIG_BYTES = 16 << 20  # bridge_head_config.json (2^20 labels fit)
MAX_CARD_BYTES = 1 << 20  # the card is documentation: a larger one is skipped with a warning


def max_anchor_chars(max_seq_length: int | None) -> int:
    """The characters of one text anchor that can reach the model: ``max(max_seq_length, 512) * CHARS_PER_TOKEN``.
    save_head cuts anchors there and read_head cuts (and bounds) what it reads there, before any tokenizer runs."""
    return max(int(max_seq_length or 0), MIN_TOKENS) * CHARS_PER_TOKEN


class HeadFormatError(HfBridgesError, ValueError):
    """A folder or repo that is not a readable bridge head; the message names the problem and the fix."""


class HeadSaveError(HfBridgesError, OSError):
    """A head could not be written (e.g. no space left); the message names the folder, the old head is intact."""


def check_inside(path: Path, folder: Path, source: str) -> Path:
    """``path`` itself, if it stays in ``folder`` once links are resolved; else an error naming the link.

    A head comes from strangers: a ``README.md -> ~/.cache/huggingface/token`` must never be read or pushed. A folder
    of the Hugging Face cache (``snapshots/<sha>/``) links its files into the repo's ``blobs/``, which is allowed."""
    if not os.path.islink(path) and os.path.realpath(path.parent) == os.path.realpath(folder):
        return path
    real = Path(os.path.realpath(path))
    roots = [Path(os.path.realpath(folder))]
    if roots[0].parent.name == "snapshots":
        roots.append(roots[0].parent.parent / "blobs")
    if any(real == root or root in real.parents for root in roots):
        return path
    raise HeadFormatError(
        f"{source}: {path.name} is a link to {real}, outside the head folder; a head never reads or uploads "
        "files outside its folder: replace the link by the file itself"
    )


def _package_version() -> str:
    """The running code's version (an editable install's metadata keeps the version it was installed at)."""
    from .._version import __version__

    return __version__


def head_card_name(folder: Path) -> str:
    """``README.md`` in a head's own folder; ``bridge_head_card.md`` in a folder shared with other files (a full
    model), so ``save_head`` never overwrites that folder's own card."""
    own = set(HEAD_FILES) | {CARD_NAME, HEAD_CARD_NAME, PREVIOUS}
    if folder.is_dir() and not {p.name for p in folder.iterdir()} <= own:
        return HEAD_CARD_NAME
    return CARD_NAME
