"""``BridgeConfig``: everything needed to rebuild a bridge model, including its raw anchor inputs."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from transformers import AutoConfig, PretrainedConfig

from .aggregation import AGGREGATIONS
from .pooling import POOLINGS
from .projections import PROJECTIONS
from .transforms import ABS_TRANSFORMS, SUBSPACE_NORMS

# Bump when a saved config or head can no longer be read by older releases.
BRIDGE_FORMAT_VERSION = 1

DEFAULT_PROJECTIONS = ("cosine", "euclidean", "l1", "linf")


class BridgeConfig(PretrainedConfig):
    """Configuration of a relative product ("bridge") model.

    Args:
        encoder: the wrapped encoder's config (a ``PretrainedConfig`` or its dict); ``None`` for a features-only head.
        encoder_name_or_path / encoder_revision: where the encoder came from, recorded so a head knows its origin.
        modality: ``"text"``, ``"image"`` or ``"features"``; heads refuse to attach across modalities.
        pooling: how token states become one vector (``mean``, ``cls``, ``pooler``, ``max``).
        max_seq_length: truncation length for anchor (and recommended for sample) tokenisation.
        anchors: the raw anchor inputs (texts), kept so any encoder can embed them again.
        anchor_labels: optional labels of the anchors (used by stratified selection and reports).
        num_anchors: k, the width of every relative subspace.
        anchor_seq_length: length of the stored tokenised anchors (set by ``from_encoder``).
        projections: similarity functions, one relative subspace each (see ``projections.PROJECTIONS``).
        abs_transform: ``none``, ``centering`` or ``standard``, fitted on the anchors before projecting.
        subspace_norm: ``layernorm`` (default), ``batchnorm`` or ``none``, one per subspace.
        aggregation: ``concat``, ``sum``, ``mlp_sum``, ``self_attention`` or ``weighted``.
        aggregation_dim: width of the learned per-subspace maps of ``mlp_sum`` / ``self_attention``, capped at
            num_anchors; ``None`` gives the paper's k->k maps (4*k^2 weights: 26 MB at 1280 anchors, 5 MB at 256).
        subspace_dropout: probability of dropping each subspace per training batch (one always survives).
        subspace_weights: per-projection weights used at inference (0 drops a subspace); ``None`` keeps all.
        classifier_hidden_size: hidden width of the MLP classifier (0 for a single linear layer).
        classifier_dropout: dropout inside the classifier.
        freeze_encoder: keep the encoder frozen (no gradients reach it).
        anchor_batch_size: batch size used when embedding the anchors.
        anchor_refresh: ``auto`` re-embeds the anchors whenever the encoder's weights changed (after an optimizer
            step on a trainable encoder or LoRA, after ``load_state_dict``); ``manual`` only on ``refresh_anchors()``
            (cheaper when fine-tuning the encoder; call it e.g. once per epoch).
    """

    model_type = "hf_bridges"

    def __init__(
        self,
        encoder: Optional[PretrainedConfig | dict] = None,
        encoder_name_or_path: Optional[str] = None,
        encoder_revision: Optional[str] = None,
        modality: str = "text",
        pooling: str = "mean",
        max_seq_length: int = 128,
        anchors: Optional[Sequence[Any]] = None,
        anchor_labels: Optional[Sequence[int]] = None,
        num_anchors: Optional[int] = None,
        anchor_seq_length: int = 0,
        projections: Sequence[str] = DEFAULT_PROJECTIONS,
        abs_transform: str = "none",
        subspace_norm: str = "layernorm",
        aggregation: str = "mlp_sum",
        aggregation_dim: Optional[int] = 256,
        subspace_dropout: float = 0.0,
        subspace_weights: Optional[Sequence[float]] = None,
        classifier_hidden_size: int = 256,
        classifier_dropout: float = 0.1,
        freeze_encoder: bool = True,
        anchor_batch_size: int = 32,
        anchor_refresh: str = "auto",
        bridge_format_version: int = BRIDGE_FORMAT_VERSION,
        **kwargs,
    ):
        if bridge_format_version > BRIDGE_FORMAT_VERSION:
            raise ValueError(
                f"this config was written with bridge format version {bridge_format_version}, but the installed "
                f"hf_bridges reads up to version {BRIDGE_FORMAT_VERSION}; upgrade hf_bridges (pip install -U hf_bridges)"
            )
        if isinstance(encoder, dict):
            encoder = dict(encoder)
            encoder = AutoConfig.for_model(encoder.pop("model_type"), **encoder)
        self.encoder = encoder
        self.encoder_name_or_path = encoder_name_or_path
        self.encoder_revision = encoder_revision
        self.modality = modality
        self.pooling = pooling
        self.max_seq_length = max_seq_length
        self.anchors = list(anchors) if anchors is not None else None
        self.anchor_labels = list(anchor_labels) if anchor_labels is not None else None
        if num_anchors is None:
            num_anchors = len(self.anchors) if self.anchors is not None else 0
        if self.anchors is not None and len(self.anchors) != num_anchors:
            raise ValueError(f"num_anchors={num_anchors} but {len(self.anchors)} anchor inputs were given")
        self.num_anchors = num_anchors
        self.anchor_seq_length = anchor_seq_length
        self.projections = list(projections)
        self.abs_transform = abs_transform
        self.subspace_norm = subspace_norm
        self.aggregation = aggregation
        self.aggregation_dim = aggregation_dim
        self.subspace_dropout = subspace_dropout
        self.subspace_weights = list(subspace_weights) if subspace_weights is not None else None
        self.classifier_hidden_size = classifier_hidden_size
        self.classifier_dropout = classifier_dropout
        self.freeze_encoder = freeze_encoder
        self.anchor_batch_size = anchor_batch_size
        self.anchor_refresh = anchor_refresh
        self.bridge_format_version = bridge_format_version
        super().__init__(**kwargs)
        self.check()

    def check(self) -> None:
        """Validate the choices; raises ``ValueError`` naming the bad value and the valid ones."""
        if not self.projections:
            raise ValueError(f"projections is empty; choose one or more of {sorted(PROJECTIONS)}")
        for name in self.projections:
            PROJECTIONS.check(name)
        if len(set(self.projections)) != len(self.projections):
            raise ValueError(f"projections has duplicates: {self.projections}")
        AGGREGATIONS.check(self.aggregation)
        ABS_TRANSFORMS.check(self.abs_transform)
        SUBSPACE_NORMS.check(self.subspace_norm)
        POOLINGS.check(self.pooling)
        if self.modality not in ("text", "image", "features"):
            raise ValueError(f"unknown modality {self.modality!r}; valid: ['features', 'image', 'text']")
        if self.anchor_refresh not in ("auto", "manual"):
            raise ValueError(f"unknown anchor_refresh {self.anchor_refresh!r}; valid: ['auto', 'manual']")
        if self.num_anchors == 1:
            raise ValueError("a relative space needs at least 2 anchors; got 1")
        if not 0.0 <= self.subspace_dropout < 1.0:
            raise ValueError(f"subspace_dropout must be in [0, 1), got {self.subspace_dropout}")
        if self.subspace_weights is not None:
            if len(self.subspace_weights) != len(self.projections):
                raise ValueError(
                    f"subspace_weights has {len(self.subspace_weights)} values for {len(self.projections)} projections"
                )
            if min(self.subspace_weights) < 0 or sum(self.subspace_weights) <= 0:
                raise ValueError(f"subspace_weights must be >= 0 with a positive sum, got {self.subspace_weights}")

    @property
    def hidden_size(self) -> int:
        """Width of the absolute embeddings the anchors live in."""
        if self.encoder is None or getattr(self, "features_dim", None):  # probed width wins (e.g. MobileNetV2)
            return getattr(self, "features_dim", None) or 0
        for attr in ("hidden_size", "d_model", "embed_dim"):
            if hasattr(self.encoder, attr):
                return getattr(self.encoder, attr)
        sizes = getattr(self.encoder, "hidden_sizes", None)
        if sizes:
            return sizes[-1]
        raise ValueError(f"cannot tell the embedding width of encoder config {type(self.encoder).__name__}")

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        if isinstance(self.encoder, PretrainedConfig):
            output["encoder"] = self.encoder.to_dict()
        return output
