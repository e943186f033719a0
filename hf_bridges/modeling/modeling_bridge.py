"""Bridge models: any Hugging Face encoder + a ``RelativeProductHead``, as native ``PreTrainedModel``s.

The model contract (timm-style): :class:`BridgePreTrainedModel` implements ``embed`` / ``refresh_anchors`` /
``set_anchor_embeddings`` / ``forward_features`` (represent) / ``forward_head`` (classify) and ``get_classifier`` /
``reset_classifier`` once. A bridge kind (text here; image in ``modeling_bridge_vision``, plain module in
``modeling_bridge_module``) only declares: ``main_input_name`` and ``input_names``, ``anchor_store_class``, how a
slice of stored anchors becomes encoder inputs (``_anchor_inputs``) and how the encoder is called (``_encode``).

Only relative imports of sibling files: ``register_for_auto_class`` copies this folder's modules next to the
weights, so ``trust_remote_code=True`` users need nothing but transformers and torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init

from .aggregation import MLPSumAggregation, WeightedAggregation
from .anchor_stores import AnchorStore, encoder_fingerprint, warn_degenerate_anchors
from .batching import embed_in_length_order, embed_in_slices
from .bridge_arguments import _FROM_ENCODER_ARGS, _attach_arguments, _given, _hub, check_config_kwargs, resolve_head
from .bridge_inputs import Tokenizing, encoder_settings, label_kwargs, truncate_rows, with_alignment, with_max_length
from .bridge_io import HeadAsScore, StagedSaveLoad
from .bridge_outputs import BridgeClassifierOutput, BridgeModelOutput, ClassifierMixin
from .bridge_stitching import AnchorStitching
from .bridge_training import TrainingHabits
from .configuration_bridge import BridgeConfig
from .head import RelativeProductHead, check_anchor_embeddings
from .loaders import check_batch, check_features, load_fitted, load_tokenizer, text_checked
from .pooling import get_pooling

__all__ = [  # re-exported: their historic home
    "AnchorStore",
    "BridgeClassifierOutput",
    "BridgeForSequenceClassification",
    "BridgeModel",
    "BridgeModelOutput",
    "BridgePreTrainedModel",
    "ClassifierMixin",
    "check_config_kwargs",
]


class BridgePreTrainedModel(TrainingHabits, HeadAsScore, StagedSaveLoad, Tokenizing, AnchorStitching, PreTrainedModel):
    config_class = BridgeConfig
    base_model_prefix = "bridge"
    main_input_name = "input_ids"
    input_names: tuple = ("input_ids", "attention_mask")  # positional order of embed(...)
    anchor_store_class: type = AnchorStore
    _no_encoder_hint = "set anchor embeddings with set_anchor_embeddings(...)"
    _with_classifier = False
    _anchors_not_set = "anchor embeddings are not set: call refresh_anchors() or set_anchor_embeddings()"
    # The head and anchor embeddings stay float32 under from_pretrained(..., dtype=torch.bfloat16 / float16); the
    # head casts its inputs at the boundary (docs/method.md#precision). Regexes on the loaded (renamed) keys.
    _keep_in_fp32_modules_strict = [r"^score\.", r"^anchors\.embeddings$"]

    def __init__(self, config: BridgeConfig, encoder: nn.Module | None = None):
        super().__init__(config)
        if encoder is None and config.encoder is not None:
            dtype = config.dtype  # from_pretrained(..., dtype=...) sets it: build the encoder in it
            dtype = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
            encoder = AutoModel.from_config(config.encoder, **({"dtype": dtype} if dtype is not None else {}))
        self.encoder = encoder
        self.anchors = self.anchor_store_class.from_config(config)
        self.head = RelativeProductHead.from_config(  # embedding_dim: the aligned component's input width
            config.head,
            config.num_anchors,
            config.num_labels if self._with_classifier else None,
            embedding_dim=config.hidden_size or None,
        )
        self.tokenizer = None  # set by from_encoder; saved next to the weights when present
        self.add_model_tags(["hf-bridges", "relative-representations"])  # Trainer / push_to_hub cards
        self._load_historic_keys()
        self._anchor_snapshot: tuple | None = None
        self._apply_freeze()
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (MLPSumAggregation, WeightedAggregation)):
            module.reset_parameters(init)  # the module owns its init; `init` skips weights loaded from a file
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        else:
            super()._init_weights(module)

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_encoder(
        cls,
        encoder: str | PreTrainedModel,
        anchors: Sequence[Any] | None = None,
        *,
        head: Any = None,
        tokenizer: Any = None,
        revision: str | None = None,
        anchor_labels: Sequence[int] | None = None,
        pooling: str | None = None,
        max_seq_length: int | None = None,
        normalize_embeddings: bool | None = None,
        labels: Any = None,
        projections: Sequence[str] | None = None,
        aggregation: str | None = None,
        head_config: Any = None,
        method: str | None = None,
        prefix: str | None = None,
        encoder_kwargs: dict | None = None,
        embed_anchors: bool = True,
        alignment_inputs: Sequence[Any] | None = None,
        **config_kwargs: Any,
    ) -> BridgePreTrainedModel:
        """Wrap ``encoder`` (Hub id, folder, loaded model or ``SentenceTransformer``) and embed ``anchors`` (texts).

        ``pooling`` / ``max_seq_length`` / ``normalize_embeddings`` / ``prefix`` = ``None``: a sentence-transformers
        model's own (``modules.json``; ``prefix`` may name a prompt), else ``mean`` / 128 / ``False`` / ``""``.
        ``labels``: class names (a ``datasets.ClassLabel``, list or ``{id: name}``) -> ``num_labels``, ``id2label``.
        Extra keyword arguments must be :class:`BridgeConfig` fields (``num_labels``, ``id2label``, ``abs_transform``,
        ...); anything else raises ``TypeError``. ``head_config``: a :class:`~.head.HeadConfig` (or dict) for the head;
        ``method``: a named head, exactly (``"paper"``, a stitch row name: ``HeadConfig.from_method``), fields on top.
        ``prefix``: text the encoder expects before every input (e.g. ``"passage: "`` for E5-style retrieval
        models); the anchors are embedded with it, it is saved as ``config.input_prefix`` and ``bridge.tokenize``
        prepends it. With ``head=``, ``prefix`` is the NEW encoder's own (the head records its training prefix).
        ``embed_anchors=False`` leaves the anchors un-embedded, to fill them with ``set_anchor_embeddings`` (e.g.
        from a cache) or ``refresh_anchors()``. ``alignment_inputs``: unlabelled inputs stored after the anchors that
        only fit the aligned map at attach time (the alignment set, docs/method.md); the relative part ignores them.
        ``head=`` (a folder or Hub repo id written by ``save_head``/``push_head_to_hub``) attaches that trained head
        instead: its anchors are embedded by this encoder and ``model.stitch_report`` says how well they match
        (see ``hf_bridges.heads.attach.attach_head`` for ``head_revision``, ``token``, ``subspace_selection``).
        """
        if head is not None:
            if anchors is not None or alignment_inputs is not None or method is not None:
                raise ValueError("pass either anchors=... (a new head) or head=... (a trained head brings its anchors)")
            if not embed_anchors:
                raise ValueError("embed_anchors=False is for a new head: an attach embeds (or reuses) its anchors")
            hub = _hub()
            check_config_kwargs(config_kwargs, "from_encoder", _FROM_ENCODER_ARGS, allowed=_attach_arguments(hub))
            # prefix: the NEW encoder's (attach_head embeds the head's anchors with it, saved as input_prefix)
            return hub.attach_head(
                cls,
                encoder,
                head,
                tokenizer=tokenizer,
                revision=revision,
                encoder_kwargs=encoder_kwargs,
                **_given(
                    prefix=prefix,
                    pooling=pooling,
                    max_seq_length=max_seq_length,
                    labels=labels,
                    normalize_embeddings=normalize_embeddings,
                ),
                **config_kwargs,
            )
        check_config_kwargs(config_kwargs, "from_encoder", _FROM_ENCODER_ARGS)
        if prefix is not None and not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string such as 'passage: ', got {type(prefix).__name__}")
        anchors = list(anchors) if anchors is not None else []
        if len(anchors) < 2:
            raise ValueError(f"a bridge needs at least 2 anchors (raw inputs such as texts), got {len(anchors)}")
        head_config, projections, aggregation = resolve_head(
            "from_encoder", method, head_config, projections, aggregation, config_kwargs
        )
        anchors, anchor_labels, head_config = with_alignment(anchors, anchor_labels, head_config, alignment_inputs)
        config_kwargs.update(label_kwargs(labels, config_kwargs))
        encoder, tokenizer, pooling, max_seq_length, normalize_embeddings, prefix, subfolder = encoder_settings(
            encoder, revision, tokenizer, pooling, max_seq_length, normalize_embeddings, prefix
        )
        model, max_seq_length = load_fitted(max_seq_length, encoder, revision, subfolder, **(encoder_kwargs or {}))
        if getattr(model, "main_input_name", "input_ids") != "input_ids" and cls.main_input_name == "input_ids":
            raise ValueError(
                f"{type(model).__name__} takes {model.main_input_name!r}, not text: use BridgeForImageClassification "
                "for image encoders, ModuleBridgeForClassification for other modules"
            )
        name = os.fspath(encoder) if isinstance(encoder, (str, os.PathLike)) else getattr(model, "name_or_path", None)
        if tokenizer is None:
            if not name:
                raise ValueError("the encoder was passed as a model without name_or_path: pass tokenizer=...")
            tokenizer = load_tokenizer(name, revision, subfolder)
        tokenizer = with_max_length(tokenizer, max_seq_length)
        tokens = text_checked(tokenizer)(
            [prefix + str(a) for a in anchors],
            padding=True,
            truncation=True,
            max_length=max_seq_length,
            return_tensors="pt",
        )
        config = BridgeConfig(
            encoder=model.config.to_dict(),
            encoder_name_or_path=name,
            encoder_revision=revision,
            pooling=pooling,
            max_seq_length=max_seq_length,
            anchors=anchors,
            anchor_labels=anchor_labels,
            anchor_seq_length=tokens["input_ids"].shape[1],
            head=head_config,
            input_prefix=prefix,
            normalize_embeddings=normalize_embeddings,
            **_given(projections=projections, aggregation=aggregation),
            **config_kwargs,
        )
        bridge = cls(config, encoder=model)
        if name and not os.path.isdir(name):  # a Hub id: Trainer's card names it as base_model
            bridge.config._name_or_path = name  # (not bridge.name_or_path: peft reads that as the base to reload)
        bridge.tokenizer = tokenizer
        bridge.anchors.input_ids.copy_(tokens["input_ids"])
        bridge.anchors.attention_mask.copy_(tokens["attention_mask"])
        warn_degenerate_anchors(anchors, bridge.refresh_anchors() if embed_anchors else None)  # duplicates: always
        return bridge

    # ---------------------------------------------------------------------------------------------------- anchors
    def _encoder_state(self) -> tuple:
        return encoder_fingerprint(self.encoder)

    # --------------------------------------------------------------------- what a bridge kind declares (text here)
    def _check_anchor_inputs(self) -> None:
        """Raise when the stored anchors cannot be re-embedded (none stored, no tokenizer / processor, ...)."""
        if self.config.num_anchors < 2 or not self.anchors.has_inputs():
            raise ValueError("this model holds no anchor inputs: build it with from_encoder(encoder, anchors=...)")

    def _anchor_inputs(self, start: int, stop: int) -> dict[str, Any]:
        """Encoder inputs for the stored anchors ``start:stop``."""
        return self.anchors.model_inputs(start, stop)

    def _encode(self, input_ids=None, attention_mask=None, **encoder_inputs: Any) -> torch.Tensor:
        """Call the encoder on one batch and pool: (B, D)."""
        check_batch(input_ids)  # no rows, or no tokens
        input_ids, attention_mask, encoder_inputs = truncate_rows(
            input_ids, attention_mask, encoder_inputs, self.config.max_seq_length, self._get_tokenizer
        )
        outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **encoder_inputs)
        return get_pooling(self.config.pooling)(outputs, attention_mask)

    # ---------------------------------------------------------------------------------------------------- anchors
    @torch.no_grad()
    def refresh_anchors(self) -> torch.Tensor:
        """Embed the stored anchor inputs with the current encoder (in eval mode) and cache the result."""
        if self.encoder is None:
            raise ValueError(f"this bridge has no encoder: {self._no_encoder_hint}")
        self._check_anchor_inputs()
        was_training = self.encoder.training
        self.encoder.eval()
        name = self.config.encoder_name_or_path or self.config.encoder_class or type(self.encoder).__name__
        try:
            embeddings = self._embed_stored_anchors(f"embedding {self.config.num_anchors} anchors with {name}")
        finally:
            self.encoder.train(was_training)
        self.set_anchor_embeddings(embeddings)
        return self.anchors.embeddings

    def _embed_stored_anchors(self, desc: str) -> torch.Tensor:
        """All stored anchors through ``embed``, with a progress bar that names them: token ids in length-sorted
        batches (padding trimmed, order restored); images and tensors in stored order."""
        size, k = self.config.anchor_batch_size, self.config.num_anchors
        if isinstance(self.anchors, AnchorStore):
            return embed_in_length_order(self.embed, self.anchors.input_ids, self.anchors.attention_mask, size, desc)
        return embed_in_slices(lambda i, j: self.embed(**self._anchor_inputs(i, j)), k, size, desc)

    def set_anchor_embeddings(self, embeddings: torch.Tensor) -> None:
        """Use precomputed anchor embeddings (k, dim), e.g. from a cache or a non-transformers encoder."""
        check_anchor_embeddings(embeddings)
        if embeddings.shape[0] != self.config.num_anchors:
            raise ValueError(f"expected {self.config.num_anchors} anchor embeddings, got {embeddings.shape[0]}")
        # A new tensor, not an in-place copy: a pending backward may still need the old one.
        self.anchors.embeddings = embeddings.detach().to(self.anchors.embeddings.device, self.anchors.embeddings.dtype)
        self.anchors.is_fresh.fill_(True)
        if self.config.encoder is None:  # features-only / plain-module bridge: the anchors define the width (saved)
            self.config.features_dim = int(embeddings.shape[1])
        self._anchor_snapshot = self._encoder_state() if self.encoder is not None else ()

    @property
    def anchor_embeddings(self) -> torch.Tensor:
        """The cached anchor embeddings, re-embedded first if the encoder's weights changed since. Under
        ``torch.compile`` a frozen encoder is not re-checked (call ``refresh_anchors()`` after changing its weights
        by hand) and the "not set" check runs inside the graph: no graph break."""
        compiling = torch.compiler.is_compiling()
        encoder, auto = self.encoder, self.config.anchor_refresh == "auto"
        if auto and encoder is not None and (not compiling or any(p.requires_grad for p in encoder.parameters())):
            state = self._encoder_state()
            if self._anchor_snapshot is None and bool(self.anchors.is_fresh):
                self._anchor_snapshot = state  # loaded with the weights they were computed from
            if self._anchor_snapshot != state:
                self.refresh_anchors()
        if compiling:
            torch._assert_async(self.anchors.is_fresh, self._anchors_not_set)
        elif not bool(self.anchors.is_fresh):
            raise ValueError(self._anchors_not_set)
        return self.anchors.embeddings

    # ---------------------------------------------------------------------------------------------------- forward
    def embed(self, *args: Any, **inputs: Any) -> torch.Tensor:
        """Pooled absolute embeddings of a batch (positional arguments in ``input_names`` order); no graph is
        kept when the encoder is frozen."""
        if self._refuse_texts(args, inputs) or len(args) > len(self.input_names):  # texts: an error naming encode()
            raise TypeError(f"embed() takes at most {len(self.input_names)} positional inputs {self.input_names}")
        for name, value in zip(self.input_names, args):
            if name in inputs:
                raise TypeError(f"embed() got {name!r} twice")
            inputs[name] = value
        if self.encoder is None:
            raise ValueError(
                f"this bridge has no encoder: pass features=... (precomputed embeddings) or {self._no_encoder_hint}"
            )
        trainable = any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and trainable):
            embeddings = self._encode(**inputs)
        normalize = self.config.normalize_embeddings  # a sentence-transformers Normalize module
        return nn.functional.normalize(embeddings, p=2, dim=-1) if normalize else embeddings

    def _subspace_weights(self, subspace_weights: torch.Tensor | None) -> torch.Tensor | None:
        if subspace_weights is None and self.config.subspace_weights is not None:
            subspace_weights = torch.tensor(self.config.subspace_weights)
        return subspace_weights

    def forward_features(self, features=None, subspace_weights=None, return_subspaces: bool = False, **inputs):
        """(embeddings, r(z)): embed the inputs (unless ``features`` are given), then represent them relative to
        the anchors; with ``return_subspaces``, r(z) is ``(representation, normalised subspaces)``."""
        inputs = {key: value for key, value in inputs.items() if value is not None}
        if features is None:
            if not inputs:
                raise ValueError(
                    f"pass {self.main_input_name} (what the encoder takes) or features (precomputed embeddings)"
                )
            if self.encoder is None:
                raise ValueError("this bridge has no encoder: pass features=... (precomputed embeddings)")
            features = self.embed(**inputs)
        weights, features = self._subspace_weights(subspace_weights), check_features(features)
        return features, self.head.represent(features, self.anchor_embeddings, weights, return_subspaces)

    def forward_head(self, representation: torch.Tensor) -> torch.Tensor:
        """Logits from r(z)."""
        classifier = self.get_classifier()
        if classifier is None:
            raise ValueError("this bridge has no classifier (a representation model); use reset_classifier(num_labels)")
        return classifier(representation.to(self.head.compute_dtype))

    def get_classifier(self) -> nn.Module | None:
        return self.head.classifier

    def reset_classifier(self, num_labels: int) -> None:
        """A fresh classifier for ``num_labels`` classes (same hidden width and dropout); relative part kept."""
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
        self.head.reset_classifier(num_labels)  # one MLP per component for combine='sum'
        self.config.num_labels = num_labels

    def _relative(self, input_ids, attention_mask, features, subspace_weights, encoder_inputs, return_subspaces=False):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, **encoder_inputs}
        return self.forward_features(features, subspace_weights, return_subspaces, **inputs)


class BridgeModel(BridgePreTrainedModel):
    """Encoder + relative product representation r(z), without a task head."""

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        subspace_weights: torch.Tensor | None = None,
        output_subspaces: bool = False,
        return_dict: bool | None = None,
        **encoder_inputs: Any,
    ) -> BridgeModelOutput:
        embeddings, rel = self._relative(
            input_ids, attention_mask, features, subspace_weights, encoder_inputs, return_subspaces=output_subspaces
        )
        representation, subspaces = rel if output_subspaces else (rel, None)
        output = BridgeModelOutput(relative_representation=representation, embeddings=embeddings, subspaces=subspaces)
        return output if return_dict is not False else output.to_tuple()


class BridgeForSequenceClassification(ClassifierMixin, BridgePreTrainedModel):
    """Encoder + relative product head + MLP classifier; returns ``loss`` when given ``labels`` (Trainer-ready)."""

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        subspace_weights: torch.Tensor | None = None,
        output_representations: bool = False,
        return_dict: bool | None = None,
        **encoder_inputs: Any,
    ) -> BridgeClassifierOutput:
        embeddings, representation = self._relative(
            input_ids, attention_mask, features, subspace_weights, encoder_inputs
        )
        return self._classify(embeddings, representation, labels, output_representations, return_dict)
