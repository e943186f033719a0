"""``transformers.Trainer`` callbacks for bridges.

:class:`AnchorRefreshCallback` is ``hf-bridges train``'s ``anchor_refresh: steps`` for the ``Trainer`` path. When the
encoder trains (LoRA, or ``freeze_encoder=False``), a bridge's default ``anchor_refresh="auto"`` re-embeds every
anchor after each optimizer step: exact, but a step then costs the batch plus all the anchors (the quick start's
1,500 anchors: ~55 s a step on one core, docs/training.md). With the callback the anchors are re-embedded every
``every`` steps, at each epoch's end and before each evaluation and save the ``Trainer`` is about to make, and once
more when training ends, so what is evaluated, saved and returned always holds the trained encoder's anchors; each
time only if the encoder changed since the last re-embedding.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..modeling.registry import ConfigError


def _bridge(model: Any) -> Any:
    """The bridge inside ``model`` (a bridge, or a peft model wrapping one)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not hasattr(inner, "refresh_anchors") or not hasattr(getattr(inner, "config", None), "anchor_refresh"):
        raise ConfigError(
            f"AnchorRefreshCallback needs a bridge (BridgeFor... or a peft model of one), got {type(model).__name__}"
        )
    return inner


class AnchorRefreshCallback(TrainerCallback):
    """Re-embed a bridge's anchors every ``every`` optimizer steps while a ``Trainer`` trains its encoder.

    ``every=8`` is ``hf-bridges train``'s default (same accuracy within noise as re-embedding after each step,
    docs/performance.md). With a frozen encoder it does nothing: the anchors cannot go stale.
    """

    def __init__(self, every: int = 8) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"AnchorRefreshCallback(every=...) must be a whole number >= 1, got {every!r}")
        self.every = every
        self._previous: str | None = None

    def _refresh(self, model: Any) -> None:
        """Re-embed the anchors if the encoder changed since they were embedded: the bridge's own ``auto`` check,
        run once (an epoch's end right after an every-N step, or the end of training right after an epoch's end,
        re-embeds nothing)."""
        if self._previous is None:
            return
        bridge = _bridge(model)
        bridge.config.anchor_refresh = "auto"
        try:
            bridge.anchor_embeddings  # noqa: B018 (the property re-embeds when stale)
        finally:
            bridge.config.anchor_refresh = "manual"

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any = None, **kwargs: Any
    ) -> None:
        bridge = _bridge(model)
        if bridge.encoder is None or not any(p.requires_grad for p in bridge.encoder.parameters()):
            self._previous = None  # frozen: embedded once, never stale
            return
        self._previous, bridge.config.anchor_refresh = bridge.config.anchor_refresh, "manual"
        self._refresh(model)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any = None, **kwargs: Any
    ) -> None:
        # the Trainer's own flow callback has already set should_evaluate / should_save for this step
        if state.global_step % self.every == 0 or control.should_evaluate or control.should_save:
            self._refresh(model)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any = None, **kwargs: Any
    ) -> None:
        self._refresh(model)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any = None, **kwargs: Any
    ) -> None:
        if self._previous is None:
            return
        self._refresh(model)
        _bridge(model).config.anchor_refresh, self._previous = self._previous, None
