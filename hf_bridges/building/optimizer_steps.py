"""Optimizer steps counted on the parameters they update, for the anchor refresh's encoder fingerprint.

A fused optimizer (``torch.optim.AdamW(fused=True)``, transformers' ``Trainer`` default ``adamw_torch_fused``)
updates parameters in place without bumping their ``_version``: the fingerprint (``(id, _version)`` per parameter)
did not change, so with LoRA or an unfrozen encoder the anchors stayed those of the first step for a whole run.
One global torch hook, registered once per process by the first fingerprint, counts every step on the parameters
that had a gradient (``modeling_bridge.encoder_fingerprint`` reads the count).
"""

from __future__ import annotations

from typing import Any

STEPS_ATTRIBUTE = "_hf_bridges_steps"  # read by modeling_bridge.encoder_fingerprint (the remote-code set)
_hook: Any = None


def _count_step(optimizer: Any, args: Any, kwargs: Any) -> None:
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is not None:
                setattr(param, STEPS_ATTRIBUTE, getattr(param, STEPS_ATTRIBUTE, 0) + 1)


def watch_optimizer_steps() -> None:
    """Register the counting hook (once)."""
    global _hook
    if _hook is None:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        _hook = register_optimizer_step_post_hook(_count_step)
