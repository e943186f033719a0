"""Bridge models: any Hugging Face encoder + a ``RelativeProductHead``, as native ``PreTrainedModel``s.

Only relative imports of sibling files: ``register_for_auto_class`` copies this folder's modules next to the
weights, so ``trust_remote_code=True`` users need nothing but transformers and torch.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .aggregation import MLPSumAggregation, WeightedAggregation
from .configuration_bridge import DEFAULT_PROJECTIONS, BridgeConfig
from .pooling import get_pooling
from .loaders import load_encoder, load_tokenizer
from .head import RelativeProductHead, check_anchor_embeddings


@dataclass
class BridgeModelOutput(ModelOutput):
    """``relative_representation`` is r(z), the aggregated product of relative subspaces."""

    relative_representation: Optional[torch.FloatTensor] = None
    embeddings: Optional[torch.FloatTensor] = None
    subspaces: Optional[torch.FloatTensor] = None


@dataclass
class BridgeClassifierOutput(ModelOutput):
    loss: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    relative_representation: Optional[torch.FloatTensor] = None
    embeddings: Optional[torch.FloatTensor] = None


class AnchorStore(nn.Module):
    """The anchors as this model needs them: tokenised inputs (to re-embed) and their cached embeddings."""

    def __init__(self, num_anchors: int, seq_length: int, hidden_size: int):
        super().__init__()
        self.register_buffer("input_ids", torch.zeros(num_anchors, seq_length, dtype=torch.long))
        self.register_buffer("attention_mask", torch.zeros(num_anchors, seq_length, dtype=torch.long))
        self.register_buffer("embeddings", torch.zeros(num_anchors, hidden_size))
        # True once `embeddings` holds this encoder's anchor embeddings (saved, so a reload does not re-embed).
        self.register_buffer("is_fresh", torch.zeros((), dtype=torch.bool))

    def model_inputs(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        mask = self.attention_mask[start:stop]
        length = max(int(mask.sum(dim=1).max()), 1)  # drop columns that are padding for every row
        return {"input_ids": self.input_ids[start:stop, :length], "attention_mask": mask[:, :length]}


def _given(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments the caller set (None: leave the config's default, or ``head_config``'s value)."""
    return {key: value for key, value in kwargs.items() if value is not None}


# Config fields from_encoder sets itself (or takes under another name: head_config=, prefix=), so not as **kwargs.
_RESERVED = frozenset({"self", "kwargs", "encoder", "encoder_revision", "anchors", "anchor_seq_length", "num_anchors",
                       "bridge_format_version", "head", "input_prefix", "transformers_version", "architectures"})


def check_config_kwargs(kwargs: dict[str, Any], where: str, named: Sequence[str] = (), allowed: Sequence[str] = ()):
    """Refuse keyword arguments that are no ``BridgeConfig`` field (a typo would otherwise land in the config and
    be silently ignored); the error names them and the closest valid name."""
    import difflib
    import inspect

    fields = set(inspect.signature(BridgeConfig.__init__).parameters)
    fields |= set(inspect.signature(PretrainedConfig.__init__).parameters) | {"num_labels"}
    valid = (fields - _RESERVED) | set(allowed)
    unknown = [key for key in kwargs if key not in valid]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(valid | set(named)), n=1, cutoff=0.6)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(
            f"{where}() got unexpected keyword argument(s) {', '.join(hints)}; valid: its own arguments "
            f"{sorted(named)} and the BridgeConfig fields {sorted(valid)}"
        )


def _hub():
    """Head-only save/push/attach live in the installed package (``hf_bridges.heads.hub``), not in this remote-code file."""
    try:
        return importlib.import_module("hf_bridges.heads.hub")
    except ImportError as error:
        raise ImportError(f"head-only save/push/attach needs the hf_bridges package ({error}): pip install hf_bridges") from None


_FROM_ENCODER_ARGS = ("encoder", "anchors", "head", "tokenizer", "revision", "anchor_labels", "pooling",
                      "max_seq_length", "projections", "aggregation", "head_config", "prefix", "encoder_kwargs")


def _attach_arguments(hub: Any) -> tuple[str, ...]:
    """The keyword arguments ``attach_head`` takes itself (``head_revision``, ``token``, ``subspace_selection``...)."""
    import inspect

    params = inspect.signature(hub.attach_head).parameters
    return tuple(n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)


class BridgePreTrainedModel(PreTrainedModel):
    config_class = BridgeConfig
    base_model_prefix = "bridge"
    main_input_name = "input_ids"
    _with_classifier = False
    _extra_auto_map: dict = {}

    def __init__(self, config: BridgeConfig, encoder: Optional[nn.Module] = None):
        super().__init__(config)
        if encoder is None and config.encoder is not None:
            encoder = AutoModel.from_config(config.encoder)
        self.encoder = encoder
        self.anchors = AnchorStore(config.num_anchors, config.anchor_seq_length, config.hidden_size)
        self.head = RelativeProductHead.from_config(
            config.head, config.num_anchors, config.num_labels if self._with_classifier else None)
        self.tokenizer = None  # set by from_encoder; saved next to the weights when present
        self._anchor_snapshot: Optional[tuple] = None
        if encoder is not None and config.freeze_encoder:
            encoder.requires_grad_(False)
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
        encoder: Union[str, PreTrainedModel],
        anchors: Optional[Sequence[Any]] = None,
        *,
        head: Any = None,
        tokenizer: Any = None,
        revision: Optional[str] = None,
        anchor_labels: Optional[Sequence[int]] = None,
        pooling: str = "mean",
        max_seq_length: int = 128,
        projections: Optional[Sequence[str]] = None,
        aggregation: Optional[str] = None,
        head_config: Any = None,
        prefix: Optional[str] = None,
        encoder_kwargs: Optional[dict] = None,
        **config_kwargs: Any,
    ) -> "BridgePreTrainedModel":
        """Wrap ``encoder`` (Hub id, local folder or loaded model) and embed ``anchors`` (raw texts) with it.

        Extra keyword arguments must be :class:`BridgeConfig` fields (``num_labels``, ``id2label``, ``abs_transform``,
        ...); anything else raises ``TypeError``. ``head_config``: a :class:`~.head.HeadConfig` (or dict) for the head.
        ``prefix``: text the encoder expects before every input (e.g. ``"passage: "`` for E5-style retrieval
        models); the anchors are embedded with it and it is saved as ``config.input_prefix``. ``bridge.tokenize(texts)``
        prepends it: if you tokenise yourself, prepend ``bridge.config.input_prefix`` to each text.
        With ``head=``, ``prefix`` is the NEW encoder's own prefix (the head records the one it was trained with).
        ``head=`` (a folder or Hub repo id written by ``save_head``/``push_head_to_hub``) attaches that trained head
        instead: its anchors are embedded by this encoder and ``model.stitch_report`` says how well they match
        (see ``hf_bridges.heads.hub.attach_head`` for ``head_revision``, ``token``, ``subspace_selection``).
        """
        if head is not None:
            if anchors is not None:
                raise ValueError("pass either anchors=... (a new head) or head=... (a trained head brings its anchors)")
            hub = _hub()
            check_config_kwargs(config_kwargs, "from_encoder", _FROM_ENCODER_ARGS, allowed=_attach_arguments(hub))
            # prefix: the NEW encoder's; attach_head passes it on to from_encoder(anchors=...), which embeds the
            # head's raw anchors with it and saves it as this bridge's config.input_prefix.
            return hub.attach_head(
                cls, encoder, head, tokenizer=tokenizer, revision=revision, encoder_kwargs=encoder_kwargs,
                **_given(prefix=prefix), **config_kwargs,
            )
        check_config_kwargs(config_kwargs, "from_encoder", _FROM_ENCODER_ARGS)
        prefix = prefix or ""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string such as 'passage: ', got {type(prefix).__name__}")
        anchors = list(anchors) if anchors is not None else []
        if len(anchors) < 2:
            raise ValueError(f"a bridge needs at least 2 anchors (raw inputs such as texts), got {len(anchors)}")
        model = load_encoder(encoder, revision, **(encoder_kwargs or {}))
        if getattr(model, "main_input_name", "input_ids") != "input_ids" and cls.main_input_name == "input_ids":
            raise ValueError(
                f"{type(model).__name__} takes {model.main_input_name!r}, not text: use BridgeForImageClassification "
                "for image encoders, ModuleBridgeForClassification for other modules"
            )
        name = encoder if isinstance(encoder, str) else getattr(model, "name_or_path", None)
        if tokenizer is None:
            if not name:
                raise ValueError("the encoder was passed as a model without name_or_path: pass tokenizer=...")
            tokenizer = load_tokenizer(name, revision)
        tokens = tokenizer(
            [prefix + str(a) for a in anchors], padding=True, truncation=True, max_length=max_seq_length,
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
            **_given(projections=projections, aggregation=aggregation),
            **config_kwargs,
        )
        bridge = cls(config, encoder=model)
        bridge.tokenizer = tokenizer
        bridge.anchors.input_ids.copy_(tokens["input_ids"])
        bridge.anchors.attention_mask.copy_(tokens["attention_mask"])
        bridge.refresh_anchors()
        return bridge

    def tokenize(self, texts: Union[str, Sequence[str]], **kwargs: Any):
        """Tokenise ``texts`` as the anchors were: ``config.input_prefix`` prepended, padded, truncated to
        ``max_seq_length``, as PyTorch tensors (``kwargs`` override these tokenizer arguments)."""
        if self.tokenizer is None and self.name_or_path:  # saved next to the weights by save_pretrained
            try:
                self.tokenizer = load_tokenizer(self.name_or_path, None)
            except (OSError, ValueError):
                pass
        if self.tokenizer is None:
            raise ValueError("this bridge has no tokenizer: set bridge.tokenizer, or build it with from_encoder")
        texts = [texts] if isinstance(texts, str) else list(texts)
        prefix = self.config.input_prefix
        options = {"padding": True, "truncation": True, "max_length": self.config.max_seq_length,
                   "return_tensors": "pt", **kwargs}
        return self.tokenizer([prefix + str(t) for t in texts], **options)

    # ---------------------------------------------------------------------------------------------------- anchors
    def _encoder_state(self) -> tuple:
        # Every in-place update (optimizer step, load_state_dict) bumps a parameter's version counter.
        return tuple((id(p), p._version) for p in self.encoder.parameters())

    @torch.no_grad()
    def refresh_anchors(self) -> torch.Tensor:
        """Embed the stored anchor inputs with the current encoder (in eval mode) and cache the result."""
        if self.encoder is None:
            raise ValueError("this bridge has no encoder: set anchor embeddings with set_anchor_embeddings(...)")
        if self.config.num_anchors < 2 or not bool(self.anchors.attention_mask.any()):
            raise ValueError("this model holds no anchor inputs: build it with from_encoder(encoder, anchors=...)")
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            size = self.config.anchor_batch_size
            chunks = [
                self.embed(**self.anchors.model_inputs(i, i + size)) for i in range(0, self.config.num_anchors, size)
            ]
        finally:
            self.encoder.train(was_training)
        self.set_anchor_embeddings(torch.cat(chunks))
        return self.anchors.embeddings

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
        """The cached anchor embeddings, re-embedded first if the encoder's weights changed since."""
        if self.encoder is not None and self.config.anchor_refresh == "auto":
            state = self._encoder_state()
            if self._anchor_snapshot is None and bool(self.anchors.is_fresh):
                self._anchor_snapshot = state  # loaded with the weights they were computed from
            if self._anchor_snapshot != state:
                self.refresh_anchors()
        if not bool(self.anchors.is_fresh):
            raise ValueError("anchor embeddings are not set: call refresh_anchors() or set_anchor_embeddings()")
        return self.anchors.embeddings

    # ---------------------------------------------------------------------------------------------------- forward
    def embed(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        **encoder_inputs: Any,
    ) -> torch.Tensor:
        """Pooled absolute embeddings of a batch; no graph is kept when the encoder is frozen."""
        if input_ids is not None and input_ids.shape[0] == 0:
            raise ValueError("empty batch: input_ids has 0 rows")
        trainable = any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and trainable):
            outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **encoder_inputs)
        return get_pooling(self.config.pooling)(outputs, attention_mask)

    def _subspace_weights(self, subspace_weights: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if subspace_weights is None and self.config.subspace_weights is not None:
            subspace_weights = torch.tensor(self.config.subspace_weights)
        return subspace_weights

    def _relative(self, input_ids, attention_mask, features, subspace_weights, encoder_inputs, return_subspaces=False):
        if features is None:
            if input_ids is None and not encoder_inputs:
                raise ValueError("pass input_ids (tokenised text) or features (precomputed embeddings)")
            if self.encoder is None:
                raise ValueError("this bridge has no encoder: pass features=... (precomputed embeddings)")
            features = self.embed(input_ids=input_ids, attention_mask=attention_mask, **encoder_inputs)
        return features, self.head.represent(
            features, self.anchor_embeddings, self._subspace_weights(subspace_weights), return_subspaces
        )

    # -------------------------------------------------------------------------------------------- head-only I/O
    stitch_report = None  # set by from_encoder(..., head=...): how well this encoder's anchor space matches the head's

    def save_head(self, save_directory, **kwargs):
        """Write only the head (weights, raw anchors, config, anchor space, card) to a folder, atomically."""
        return _hub().save_head(self, save_directory, **kwargs)

    def push_head_to_hub(self, repo_id: str, **kwargs):
        """Push only the head to a Hub model repo; attach it anywhere with ``from_encoder(encoder, head=repo_id)``."""
        return _hub().push_head_to_hub(self, repo_id, **kwargs)

    def train(self, mode: bool = True):
        """A frozen encoder stays in eval mode (no dropout), so training sees the features inference sees and the
        anchors were embedded with; a trainable or LoRA encoder follows ``mode``."""
        super().train(mode)
        if mode and self.encoder is not None and not any(p.requires_grad for p in self.encoder.parameters()):
            self.encoder.eval()
        return self

    def unfreeze_encoder(self) -> None:
        """Let gradients reach the encoder (anchors are then re-embedded whenever its weights change)."""
        self.config.freeze_encoder = False
        self.encoder.requires_grad_(True)

    def save_pretrained(self, save_directory, *args, **kwargs):
        # Ship every Auto class, not only this one's, so a trust_remote_code user can pick any of them.
        self.config.auto_map = {
            "AutoConfig": "configuration_bridge.BridgeConfig",
            "AutoModel": "modeling_bridge.BridgeModel",
            "AutoModelForSequenceClassification": "modeling_bridge.BridgeForSequenceClassification",
            **self._extra_auto_map,  # e.g. the image model's entry, set by the class that ships its file
        }
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if self.tokenizer is not None and kwargs.get("is_main_process", True):
            self.tokenizer.save_pretrained(save_directory)
        return result


class BridgeModel(BridgePreTrainedModel):
    """Encoder + relative product representation r(z), without a task head."""

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        features: Optional[torch.Tensor] = None,
        subspace_weights: Optional[torch.Tensor] = None,
        output_subspaces: bool = False,
        return_dict: Optional[bool] = None,
        **encoder_inputs: Any,
    ) -> BridgeModelOutput:
        embeddings, rel = self._relative(
            input_ids, attention_mask, features, subspace_weights, encoder_inputs, return_subspaces=output_subspaces
        )
        representation, subspaces = rel if output_subspaces else (rel, None)
        output = BridgeModelOutput(relative_representation=representation, embeddings=embeddings, subspaces=subspaces)
        return output if return_dict is not False else output.to_tuple()


class ClassifierMixin:
    """Logits, loss and output of every bridge with a classifier (text, image, plain module)."""

    _with_classifier = True

    def _classify(self, embeddings, representation, labels, output_representations: bool, return_dict) -> Any:
        logits = self.head.classifier(representation)
        loss = self.compute_loss(logits, labels) if labels is not None else None
        output = BridgeClassifierOutput(
            loss=loss,
            logits=logits,
            relative_representation=representation if output_representations else None,
            embeddings=embeddings if output_representations else None,
        )
        return output if return_dict is not False else output.to_tuple()

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        num_labels = self.config.num_labels
        if self.config.problem_type is None:
            if num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            return nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).view(-1))
        if self.config.problem_type == "multi_label_classification":
            return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        labels = labels.view(-1)
        if labels.shape[0] != logits.shape[0]:
            raise ValueError(f"got {labels.shape[0]} labels for a batch of {logits.shape[0]} samples")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
            raise ValueError(
                f"labels must be in [0, {num_labels - 1}] for num_labels={num_labels}; got values from "
                f"{int(labels.min())} to {int(labels.max())} (set num_labels or id2label to cover every class)"
            )
        return nn.functional.cross_entropy(logits, labels)


class BridgeForSequenceClassification(ClassifierMixin, BridgePreTrainedModel):
    """Encoder + relative product head + MLP classifier; returns ``loss`` when given ``labels`` (Trainer-ready)."""

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        features: Optional[torch.Tensor] = None,
        subspace_weights: Optional[torch.Tensor] = None,
        output_representations: bool = False,
        return_dict: Optional[bool] = None,
        **encoder_inputs: Any,
    ) -> BridgeClassifierOutput:
        embeddings, representation = self._relative(input_ids, attention_mask, features, subspace_weights, encoder_inputs)
        return self._classify(embeddings, representation, labels, output_representations, return_dict)
