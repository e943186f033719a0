"""``BridgeConfig``: everything needed to rebuild a bridge model, including its raw anchor inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from .errors import ConfigError
from .head import DEFAULT_PROJECTIONS, HeadConfig  # noqa: F401 (DEFAULT_PROJECTIONS: re-exported, its old home)
from .pooling import POOLINGS

# Bump when a saved config or head can no longer be read by older releases.
# 2: the head hyper-parameters are nested under "head" (format 1 wrote them flat; still read).
# 3: the head's aligned component (head.aligned / aligned_dim / component_dropout); configs of format 1-2 lack those
#    keys and read them as LEGACY_DEFAULTS (no aligned component), since HeadConfig's defaults changed.
BRIDGE_FORMAT_VERSION = 3

HEAD_FIELDS = HeadConfig.field_names()
_UNSET: Any = object()


def _head_property(name: str) -> property:
    """``config.<name>`` reads and writes ``config.head.<name>`` (the flat spelling of format 1 keeps working)."""

    def get(self):
        return getattr(self.head, name)

    def set_(self, value):
        self.head = self.head.replace(**{name: value})

    return property(get, set_, doc=f"Alias of ``head.{name}``.")


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
        head: the head's hyper-parameters, a :class:`~.head.HeadConfig` or its dict (saved under ``"head"``).
            The flat keys of format 1 (``projections``, ``abs_transform``, ``subspace_norm``, ``aggregation``,
            ``aggregation_dim``, ``subspace_dropout``, ``subspace_weights``, ``classifier_hidden_size``,
            ``classifier_dropout``) are still accepted and folded into ``head``; ``config.projections`` etc. stay
            readable and writable as aliases of ``config.head.projections``.
        head_method: the named head ``head`` was built from (``from_encoder(..., method="paper")``, see
            ``HeadConfig.from_method``), fields given next to it applied on top; ``None``: a head spelled field by
            field. ``head`` always holds every field as built.
        freeze_encoder: keep the encoder frozen (no gradients reach it); re-applied after ``from_pretrained``.
        anchor_batch_size: batch size used when embedding the anchors.
        features_dim: width of the absolute embeddings when it cannot be read from ``encoder`` (plain-module and
            features-only bridges, or a probed width such as MobileNetV2's); set from the anchors' embeddings.
        encoder_class: the registered name of a plain module encoder (``module_encoders``), so a reload rebuilds it.
        anchor_input_shape / anchor_input_dtype: shape (without the batch axis) and dtype of a module bridge's
            stored raw anchor tensors.
        anchor_image_shape: ``[C, H, W]`` of an image bridge's stored (preprocessed) anchor images.
        output_shape: what ``BridgeForReconstruction`` decodes to, e.g. ``[1, 28, 28]`` (or ``[D]``).
        decoder_hidden_size: hidden width of the reconstruction decoder.
        decoder_activation: ``sigmoid`` (0-1 images) or ``none``, applied to the reconstruction.
        normalize_embeddings: L2-normalise every pooled embedding (anchors and samples), as a sentence-transformers
            ``Normalize`` module does; ``from_encoder`` reads it from the model's ``modules.json``.
        input_prefix: text prepended to every input of a text bridge (and to its anchors), e.g. ``"passage: "`` for
            retrieval encoders trained with one; ``bridge.tokenize`` applies it.
        anchor_refresh: ``auto`` re-embeds the anchors whenever the encoder's weights changed (after an optimizer
            step on a trainable encoder or LoRA, after ``load_state_dict``); ``manual`` only on ``refresh_anchors()``
            (cheaper when fine-tuning the encoder; call it e.g. once per epoch).
    """

    model_type = "hf_bridges"

    def __init__(
        self,
        encoder: PretrainedConfig | dict | None = None,
        encoder_name_or_path: str | None = None,
        encoder_revision: str | None = None,
        modality: str = "text",
        pooling: str = "mean",
        max_seq_length: int = 128,
        anchors: Sequence[Any] | None = None,
        anchor_labels: Sequence[int] | None = None,
        num_anchors: int | None = None,
        anchor_seq_length: int = 0,
        head: HeadConfig | dict | None = None,
        projections: Sequence[str] = _UNSET,
        abs_transform: str = _UNSET,
        subspace_norm: str = _UNSET,
        aggregation: str = _UNSET,
        aggregation_dim: int | None = _UNSET,
        subspace_dropout: float = _UNSET,
        subspace_weights: Sequence[float] | None = _UNSET,
        classifier_hidden_size: int = _UNSET,
        classifier_dropout: float = _UNSET,
        head_method: str | None = None,
        freeze_encoder: bool = True,
        anchor_batch_size: int = 32,
        anchor_refresh: str = "auto",
        features_dim: int | None = None,
        encoder_class: str | None = None,
        anchor_input_shape: Sequence[int] | None = None,
        anchor_input_dtype: str = "float32",
        anchor_image_shape: Sequence[int] | None = None,
        output_shape: Sequence[int] | None = None,
        decoder_hidden_size: int = 256,
        decoder_activation: str = "sigmoid",
        input_prefix: str = "",
        normalize_embeddings: bool = False,
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
        flat = {
            "projections": projections,
            "abs_transform": abs_transform,
            "subspace_norm": subspace_norm,
            "aggregation": aggregation,
            "aggregation_dim": aggregation_dim,
            "subspace_dropout": subspace_dropout,
            "subspace_weights": subspace_weights,
            "classifier_hidden_size": classifier_hidden_size,
            "classifier_dropout": classifier_dropout,
        }
        flat = {key: value for key, value in flat.items() if value is not _UNSET}
        head_dict = dict(head or {}) if head is None or isinstance(head, dict) else head.to_dict()
        clash = [key for key in flat if key in head_dict and head_dict[key] != flat[key]]
        if clash:
            raise ConfigError(f"BridgeConfig: {clash} given both flat and in head= with different values; pass one")
        for key in ("projections", "subspace_weights"):  # tuples from Python callers are lists in the config
            if isinstance(flat.get(key), tuple):
                flat[key] = list(flat[key])
        self.head = HeadConfig.from_dict(
            {**head_dict, **flat}, where="BridgeConfig.head", legacy=bridge_format_version < 3
        )
        self.head_method = head_method
        self.freeze_encoder = freeze_encoder
        self.anchor_batch_size = anchor_batch_size
        self.anchor_refresh = anchor_refresh
        self.features_dim = int(features_dim) if features_dim else None
        self.encoder_class = encoder_class
        self.anchor_input_shape = [int(d) for d in anchor_input_shape] if anchor_input_shape is not None else None
        self.anchor_input_dtype = anchor_input_dtype or "float32"
        self.anchor_image_shape = [int(d) for d in anchor_image_shape] if anchor_image_shape is not None else None
        self.output_shape = [int(d) for d in output_shape] if output_shape is not None else None
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_activation = decoder_activation
        self.input_prefix = input_prefix or ""
        self.normalize_embeddings = bool(normalize_embeddings)
        self.bridge_format_version = BRIDGE_FORMAT_VERSION  # read format 1 or 2, written as the current one
        super().__init__(**kwargs)
        self.check()

    def check(self) -> None:
        """Validate the choices; raises ``ConfigError`` (a ``ValueError``) naming the bad value and the valid ones."""
        self.head.validate("BridgeConfig.head")
        POOLINGS.check(self.pooling)
        if self.modality not in ("text", "image", "features"):
            raise ValueError(f"unknown modality {self.modality!r}; valid: ['features', 'image', 'text']")
        if self.anchor_refresh not in ("auto", "manual"):
            raise ValueError(f"unknown anchor_refresh {self.anchor_refresh!r}; valid: ['auto', 'manual']")
        if self.decoder_activation not in ("none", "sigmoid"):
            raise ConfigError(f"unknown decoder_activation {self.decoder_activation!r}; valid: ['none', 'sigmoid']")
        if (
            isinstance(self.decoder_hidden_size, bool)
            or not isinstance(self.decoder_hidden_size, int)
            or not (1 <= self.decoder_hidden_size <= 65536)
        ):
            raise ConfigError(f"decoder_hidden_size must be an integer in [1, 65536], got {self.decoder_hidden_size!r}")
        if not isinstance(self.input_prefix, str):
            raise ConfigError(f"input_prefix must be a string (e.g. 'passage: '), got {self.input_prefix!r}")
        if self.num_anchors == 1:
            raise ValueError("a relative space needs at least 2 anchors; got 1")
        relative = self.head.relative_anchors
        if relative is not None and self.num_anchors and relative > self.num_anchors:
            raise ConfigError(
                f"head.relative_anchors={relative} but the bridge holds {self.num_anchors} anchors: the relative "
                "anchors come first, the alignment set after them; lower relative_anchors or pass more anchors"
            )

    @property
    def hidden_size(self) -> int:
        """Width of the absolute embeddings the anchors live in."""
        if self.encoder is None or self.features_dim:  # probed width wins (e.g. MobileNetV2)
            return self.features_dim or 0
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
        output["head"] = self.head.to_dict()
        return output

    def to_diff_dict(self) -> dict[str, Any]:
        # The head is always written in full: a default that changes in a later release must not change a saved head.
        output = super().to_diff_dict()
        output["head"] = self.head.to_dict()
        output["bridge_format_version"] = self.bridge_format_version
        return output


for _name in HEAD_FIELDS:
    setattr(BridgeConfig, _name, _head_property(_name))
del _name
