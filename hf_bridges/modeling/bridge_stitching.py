"""Zero-shot stitching from anchor embeddings: the aligned head's map fitted when another encoder takes over.

``from_encoder(encoder, head=...)`` fits it for transformers encoders (``hf_bridges.heads.attach``); this mixin
does the same for a bridge that is already built: a module bridge's ``attach_encoder``, or a features-only bridge
fed the anchors as another encoder embeds them (``stitch_anchor_embeddings``). The fit itself lives in the
installed package (``hf_bridges.heads.compatibility.align_head``), not in these remote-code files.

Only relative imports of sibling files: shipped as remote code next to the weights.
"""

from __future__ import annotations

from typing import Any

import torch

from .bridge_arguments import _installed


class AnchorStitching:
    """Mixed into :class:`~.modeling_bridge.BridgePreTrainedModel`."""

    def _stitch_reference(self) -> tuple | None:
        """What the map is fitted against: the anchor embeddings held now (the training encoder's, or the encoder
        the head was last attached to, with that map). None for a head without an aligned component."""
        if not getattr(self.head, "aligned", False):
            return None
        if not bool(self.anchors.is_fresh):
            raise ValueError(
                "this bridge's aligned head needs the anchor embeddings of the encoder it was trained on to fit the "
                "new encoder's map, and it holds none: attach the training encoder first, or set them with "
                "set_anchor_embeddings(...)"
            )
        head = self.head
        return (
            self.anchors.embeddings.detach().clone(),
            (head.aligned_weight.detach().clone(), head.aligned_bias.detach().clone()),
        )

    def _fit_alignment(
        self, reference: tuple | None, translation: str, relative_space: str, gate: bool = False
    ) -> dict | None:
        """Fit the aligned map from the current anchor embeddings into the reference's space (``reference``:
        (anchor embeddings, their map or None)); record weights and alignment in the config."""
        if reference is None:
            return None
        weights, info = _installed("heads.compatibility").align_head(
            self.head,
            reference[0],
            self.anchors.embeddings,
            reference[1],
            base_weights=self.config.subspace_weights,
            translation=translation,
            relative_space=relative_space,
            gate=gate,
        )
        self.config.subspace_weights = weights
        self.config.head.alignment = info
        self.config.check()
        return info

    def stitch_anchor_embeddings(
        self, embeddings: torch.Tensor, *, translation: str = "auto", relative_space: str = "auto"
    ) -> dict[str, Any] | None:
        """Switch to another encoder given only its embeddings of the stored anchors (k, D'), e.g. a features-only
        bridge whose inputs now come from another model: the embeddings replace the current ones and an aligned
        head gets its map into the training encoder's space, fitted on them (``translation`` / ``relative_space``
        as in ``from_encoder(..., head=...)``). Returns the alignment record (None for a relative-only head).
        ``set_anchor_embeddings`` is the plain setter: same encoder, refreshed embeddings, no refit."""
        reference = self._stitch_reference()
        self.set_anchor_embeddings(embeddings)
        return self._fit_alignment(reference, translation, relative_space)
