"""The encoders an index bridge connects, as users have them: sentence-transformers models (prompts, pooling,
``Normalize``), loaded by name or passed in, and what identifies them (id, snapshot commit, width, settings).

A vector is whatever ``SentenceTransformer.encode`` returns for the role: queries get the model's ``query`` prompt,
stored texts its ``document`` (or ``passage``) prompt, when the model defines them; both as float32 numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..modeling.registry import HfBridgesError

QUERY_PROMPTS = ("query",)
DOCUMENT_PROMPTS = ("document", "passage", "corpus")


class IndexBridgeError(HfBridgesError, ValueError):
    """An index bridge that cannot be fitted, loaded or applied as asked; the message names the fix."""


# The encoder checks (``IndexBridge._check_probe`` on the new encoder, ``evaluate._old_encoder`` on the old one):
# how many paired texts an encoder embeds again, and how far the mean cosine with what was stored at fit time may
# fall (new side: mapped into the index, against the recorded figure; old side: against 1). Measured on the new side
# (benchmarks/encoder_probe.py): bfloat16 moves it by 1e-4, weights moved by 3 % of their spread by 0.002, by 10 %
# by 0.03, max_seq_length 8 by 0.06, another model of the same width by 0.5 (docs/retrieval.md).
PROBE_TEXTS, PROBE_TOLERANCE = 32, 0.01


@dataclass
class TextEncoder:
    """A loaded sentence-transformers model and its identity (recorded in the bridge's config and card)."""

    model: Any
    name_or_path: str
    revision: str | None
    dim: int
    settings: dict = field(default_factory=dict)  # pooling, normalize, max_seq_length, prompts

    def prompt_name(self, role: str) -> str | None:
        """The model's own prompt for ``role`` ('query' / 'document'), or None (it has none, or an empty one)."""
        prompts = self.settings.get("prompts") or {}
        for name in QUERY_PROMPTS if role == "query" else DOCUMENT_PROMPTS:
            if prompts.get(name):
                return name
        return None

    def encode(self, texts: list[str], role: str = "document", batch_size: int = 32) -> np.ndarray:
        """float32 (n, dim) vectors of ``texts`` for ``role``, exactly as the model embeds them; a progress bar past
        one batch (a fit embeds thousands of paired texts per encoder), hidden as every hf_bridges bar is."""
        from ..modeling.modeling_bridge import progress_enabled

        prompt = self.prompt_name(role)
        show = progress_enabled() and len(texts) > batch_size
        vectors = self.model.encode(
            list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=show, prompt_name=prompt
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def record(self) -> dict:
        return {"name_or_path": self.name_or_path, "revision": self.revision, "hidden_size": self.dim, **self.settings}


def load_text_encoder(encoder: Any, revision: str | None = None) -> TextEncoder:
    """A ``TextEncoder`` from a Hub id / folder (loaded with sentence-transformers) or a ``SentenceTransformer``."""
    from ..building.sentence_transformers import is_sentence_transformer, st_encoder_settings

    if isinstance(encoder, TextEncoder):
        return encoder
    if isinstance(encoder, str):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise IndexBridgeError(
                "an index bridge loads encoders by name with sentence-transformers: pip install sentence-transformers "
                "(or pass a loaded SentenceTransformer)"
            ) from None
        name = encoder
        try:
            model = SentenceTransformer(encoder, revision=revision, device="cpu")
        except OSError as error:
            from ..snapshots import not_cached_offline

            missing = not_cached_offline(encoder, revision)  # offline and not cached (a typo): the closest id
            if missing:
                raise IndexBridgeError(missing) from None
            raise IndexBridgeError(f"cannot load encoder {encoder!r}: {error}") from None
    elif is_sentence_transformer(encoder):
        model = encoder
        name = _model_name(encoder)
    else:
        raise IndexBridgeError(
            f"an index bridge needs a sentence-transformers encoder (a SentenceTransformer or its Hub id / folder), "
            f"got {type(encoder).__name__}"
        )
    settings = {k: v for k, v in st_encoder_settings(model).items() if k not in ("model", "tokenizer", "subfolder")}
    dim = int((getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)())
    return TextEncoder(model, name, revision or _commit(model, name), dim, settings)


def _model_name(model: Any) -> str:
    card = getattr(model, "model_card_data", None)
    name = getattr(card, "base_model", None) or getattr(card, "model_id", None)
    if name:
        return str(name)
    transformer = next(iter(model._modules.values()), None)
    hf = getattr(transformer, "auto_model", None) or getattr(transformer, "model", None)
    return str(getattr(getattr(hf, "config", None), "_name_or_path", None) or type(model).__name__)


def _commit(model: Any, name: str) -> str | None:
    """The snapshot commit the model was loaded from (its config's ``_commit_hash``), or a cached Hub id's."""
    transformer = next(iter(model._modules.values()), None)
    hf = getattr(transformer, "auto_model", None) or getattr(transformer, "model", None)
    commit = getattr(getattr(hf, "config", None), "_commit_hash", None)
    if commit:
        return str(commit)
    try:
        from ..snapshots import resolve_hf_revision

        return resolve_hf_revision(name)
    except Exception:
        return None
