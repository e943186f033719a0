"""The Accelerate training loop: device placement, mixed precision, gradient accumulation, DDP/FSDP/DeepSpeed
through ``accelerate launch``, atomic checkpoints every N steps, evaluation each epoch, file trackers."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import torch
from torch.utils.data import DataLoader

from ..logging import get_logger, progress_bars
from .build import build_model, build_tokenizer, load_data
from .checkpoint import (
    CheckpointError,
    install_prefix_hooks,
    read_state,
    resolve_checkpoint,
    save_checkpoint,
    write_text_atomic,
)
from .config import LENGTH_KEYS, TrainConfig
from .features import feature_loaders, use_feature_cache
from .trackers import build_trackers

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedTokenizerBase

logger = get_logger(__name__)


def base_bridge(model: torch.nn.Module) -> torch.nn.Module:
    """The ``BridgeForSequenceClassification`` inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def encoder_is_trained(bridge: torch.nn.Module) -> bool:
    return any(p.requires_grad for p in bridge.encoder.parameters())


def make_loaders(
    cfg: TrainConfig, data: datasets.DatasetDict, tokenizer: PreTrainedTokenizerBase
) -> tuple[DataLoader, DataLoader]:
    from transformers import DataCollatorWithPadding

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=cfg.max_seq_length)

    keep = ["input_ids", "attention_mask", "labels"]
    tokenized = data.map(tokenize, batched=True).rename_column("label", "labels")
    tokenized = tokenized.select_columns(keep).with_format("torch")
    collate = DataCollatorWithPadding(tokenizer)
    train = DataLoader(tokenized["train"], batch_size=cfg.batch_size, shuffle=True, collate_fn=collate)
    evaluation = DataLoader(tokenized["test"], batch_size=cfg.batch_size, shuffle=False, collate_fn=collate)
    return train, evaluation


def param_groups(cfg: TrainConfig, model: torch.nn.Module) -> list[dict[str, Any]]:
    bridge = base_bridge(model)
    encoder_ids = {id(p) for p in bridge.encoder.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    head = [p for p in trainable if id(p) not in encoder_ids]
    encoder = [p for p in trainable if id(p) in encoder_ids]
    groups = [{"params": head, "lr": cfg.learning_rate}]
    if encoder:
        groups.append({"params": encoder, "lr": cfg.encoder_learning_rate or cfg.learning_rate})
    return groups


@torch.no_grad()
def evaluate(accelerator: Accelerator, model: torch.nn.Module, loader: DataLoader) -> dict[str, float]:
    """Accuracy, macro-F1 and loss over the whole eval split (gathered across processes, no duplicates)."""
    from ..metrics import classification_scores

    model.eval()
    predictions, references, losses = [], [], []
    for batch in loader:
        output = model(**batch)
        preds, refs, loss = accelerator.gather_for_metrics(
            (output.logits.argmax(-1), batch["labels"], output.loss.detach().float().repeat(len(batch["labels"])))
        )
        predictions.append(preds.cpu())
        references.append(refs.cpu())
        losses.append(loss.cpu())
    model.train()
    scores = classification_scores(torch.cat(predictions).tolist(), torch.cat(references).tolist())
    return {**scores, "loss": float(torch.cat(losses).mean())}


def _flat(values: dict[str, Any]) -> dict[str, Any]:
    """Tracker-friendly config: scalars stay, everything else becomes its JSON text."""
    return {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v, default=str) for k, v in values.items()}


def save_final(
    accelerator: Accelerator, model: torch.nn.Module, out: Path, metrics: dict | None = None
) -> dict[str, str]:
    """The full model (``save_pretrained``, LoRA merged), the adapter when LoRA, the head when the model can."""
    saved: dict[str, str] = {}
    if not accelerator.is_main_process:
        return saved
    unwrapped = accelerator.unwrap_model(model)

    def atomic(name: str, write) -> None:
        tmp, final = out / f".tmp-{name}", out / name
        shutil.rmtree(tmp, ignore_errors=True)
        write(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        saved[name] = str(final)

    if hasattr(unwrapped, "peft_config"):
        atomic("adapter", unwrapped.save_pretrained)
        bridge = unwrapped.merge_and_unload()  # LoRA folded into the encoder; the trained head copy back in place
    else:
        bridge = unwrapped
    atomic("model", bridge.save_pretrained)
    if hasattr(bridge, "save_head"):
        # last eval: validation accuracy; the anchors and alignment set are picks of the training split
        atomic("head", lambda folder: bridge.save_head(folder, metrics=metrics, anchors_in_training=True))
    return saved


def _check_lengthened(checkpoint: Path, changes: dict[str, tuple], step: int, total_steps: int) -> None:
    """A resume with another ``num_epochs`` / ``max_steps``: refused when nothing is left to train, else logged (the
    learning rate now decays linearly to zero at the new total, so the weights differ from a run launched with it)."""
    said = ", ".join(f"{k} {was} -> {now}" for k, (was, now) in changes.items())
    if step >= total_steps:
        raise ValueError(
            f"checkpoint {checkpoint} is at step {step}, and with {said} the run ends at step {total_steps}: nothing "
            "is left to train; raise num_epochs / max_steps to train longer"
        )
    logger.warning(
        "resuming %s at step %d with %s: the linear schedule now runs to step %d (its learning rate is recomputed "
        "for the new total, as transformers' Trainer does)",
        checkpoint,
        step,
        said,
        total_steps,
    )


def train(cfg: TrainConfig, resume: str | None = None) -> dict[str, Any]:
    """Run one training job; returns (and writes to ``output_dir/results.json``) what it measured."""
    with progress_bars(cfg.progress_bar), contextlib.ExitStack() as loop_scope:  # the embedding bars too
        return _train(cfg, resume, loop_scope)


def _train(cfg: TrainConfig, resume: str | None, loop_scope: contextlib.ExitStack) -> dict[str, Any]:
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    out = Path(cfg.output_dir)
    accelerator = Accelerator(
        cpu=cfg.cpu,
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with=build_trackers(cfg.log_with, "train", out / "logs"),
        project_dir=str(out),
        dataloader_config=DataLoaderConfiguration(split_batches=True, use_seedable_sampler=True, data_seed=cfg.seed),
    )
    world = accelerator.num_processes
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != world:
        raise ValueError(
            f"launched as {launched} processes (WORLD_SIZE) but Accelerate formed a world of {world}: without GPUs, "
            "set ACCELERATE_USE_CPU=1 (or cpu=true) so the processes join one gloo group (see README, 'Training')"
        )
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} (global) must be divisible by the {world} processes")
    checkpoint, state, lengthened = None, {}, {}
    if resume:
        checkpoint = resolve_checkpoint(resume, out)
        state = read_state(checkpoint)
        if state.get("fingerprint") != cfg.fingerprint():
            changes = cfg.changes(state.get("config", {}))
            if not changes or set(changes) - LENGTH_KEYS:
                diff = cfg.differences(state.get("config", {}))
                raise ValueError(
                    f"checkpoint {checkpoint} was written by a run with another config "
                    f"({'; '.join(diff) or 'fingerprint ' + str(state.get('fingerprint'))}); resume with the config "
                    "that wrote it (only num_epochs / max_steps may change), or start a fresh run in a new output_dir"
                )
            lengthened = changes  # num_epochs / max_steps only: train longer (or stop sooner) from the checkpoint
    set_seed(cfg.seed)
    with accelerator.main_process_first():
        data = load_data(cfg)
        tokenizer = build_tokenizer(cfg, list(data["train"]["text"]))
        train_loader, eval_loader = make_loaders(cfg, data, tokenizer)
    model = build_model(cfg, data["train"], tokenizer)
    cached, cache_started = use_feature_cache(cfg, len(train_loader)), time.perf_counter()
    if cached:  # every process embeds the full splits itself: identical features everywhere, no broadcast
        train_loader, eval_loader = feature_loaders(cfg, model, train_loader, eval_loader, accelerator.device)
    optimizer = torch.optim.AdamW(param_groups(cfg, model), weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.gradient_accumulation_steps)
    total_steps = steps_per_epoch * cfg.num_epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    if lengthened:
        _check_lengthened(checkpoint, lengthened, int(state.get("step", 0)), total_steps)
    scheduler = get_scheduler(
        "linear", optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps), num_training_steps=total_steps
    )
    model, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, eval_loader, scheduler
    )
    install_prefix_hooks(accelerator, model)
    bridge = base_bridge(accelerator.unwrap_model(model))
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
    run_info = {
        "world_size": world,
        "distributed_type": str(accelerator.distributed_type),
        "backend": getattr(accelerator.state, "backend", None),
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "fingerprint": cfg.fingerprint(),
        "train_samples": len(data["train"]),
        "eval_samples": len(data["test"]),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "cached_features": cached,
        "feature_cache_seconds": time.perf_counter() - cache_started if cached else None,  # not in "seconds"
        "resumed_from": str(checkpoint) if checkpoint else None,
        "resumed_with": {k: list(v) for k, v in lengthened.items()} or None,  # num_epochs / max_steps: [was, now]
    }
    accelerator.init_trackers("hf_bridges", config=_flat({**cfg.to_dict(), **run_info}))

    step = int(state.get("step", 0))
    start_epoch, skip = int(state.get("epoch", 0)), int(state.get("batches_in_epoch", 0))
    history: list[dict[str, Any]] = list(state.get("history", []))
    bar = tqdm(total=total_steps, initial=step, disable=not (cfg.progress_bar and accelerator.is_local_main_process))
    manual = cfg.anchor_refresh in ("manual", "steps") and encoder_is_trained(bridge)
    every = cfg.anchor_refresh_steps if manual and cfg.anchor_refresh == "steps" else 0
    if every:  # the loop owns the refreshes while it runs; the saved model re-embeds after any update again
        bridge.config.anchor_refresh = "manual"
    started, samples, stop = time.perf_counter(), 0, step >= total_steps
    loss_sum = torch.zeros((), device=accelerator.device)
    loss_count = 0

    def ckpt_state(epoch: int, batches: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "batches_in_epoch": batches,
            "fingerprint": cfg.fingerprint(),
            "config": cfg.to_dict(),
            "world_size": world,
            "history": history,
        }

    model.train()
    # the step bar shows the loop: a bar per anchor refresh (every step with anchor_refresh auto) only broke it up
    loop_scope.enter_context(progress_bars(False))
    for epoch in range(start_epoch, cfg.num_epochs):
        if stop:
            break
        if manual and not skip:  # per-epoch refresh (not when resuming mid-epoch: the checkpoint holds its anchors)
            bridge.refresh_anchors()
        train_loader.set_epoch(epoch)
        loader = train_loader
        batches = 0
        replay_rng = None
        if skip:
            loader = accelerator.skip_first_batches(train_loader, skip)
            loader.set_epoch(epoch)
            batches, skip = skip, 0
            # creating this iterator draws its base seed from the global RNG, which the uninterrupted run drew at
            # the epoch start: put back the checkpoint's RNG state after it, so dropout masks replay bit for bit
            replay_rng = torch.random.get_rng_state()
        for batch in loader:
            if replay_rng is not None:
                torch.random.set_rng_state(replay_rng)
                replay_rng = None
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            batches += 1
            samples += len(batch["labels"]) * world
            loss_sum += loss.detach().float()
            loss_count += 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            if every and step % every == 0:
                bridge.refresh_anchors()  # anchor_refresh: steps
            if step % max(cfg.log_every, 1) == 0 or step == total_steps:
                mean_loss = accelerator.reduce(loss_sum / max(loss_count, 1), reduction="mean").item()
                accelerator.log(
                    {
                        "train/loss": mean_loss,
                        "train/lr": scheduler.get_last_lr()[0],
                        "epoch": epoch,
                        "world_size": world,
                    },
                    step=step,
                )
                loss_sum.zero_()
                loss_count = 0
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save_checkpoint(accelerator, out, step, ckpt_state(epoch, batches), cfg.keep_checkpoints)
            if step >= total_steps:
                stop = True
                break
        if manual:
            bridge.refresh_anchors()
        metrics = evaluate(accelerator, model, eval_loader)
        history.append({"epoch": epoch, "step": step, **metrics})
        accelerator.log({f"eval/{k}": v for k, v in metrics.items()} | {"epoch": epoch, "world_size": world}, step=step)
        finished = batches >= len(train_loader)
        save_checkpoint(
            accelerator,
            out,
            step,
            ckpt_state(epoch + 1 if finished else epoch, 0 if finished else batches),
            cfg.keep_checkpoints,
            suffix="-epoch-end",
        )
    bar.close()
    loop_scope.close()
    seconds = time.perf_counter() - started
    accelerator.wait_for_everyone()
    if every:
        bridge.config.anchor_refresh = "auto"
    last = {k: v for k, v in (history[-1] if history else {}).items() if k in ("accuracy", "macro_f1")}
    saved = save_final(accelerator, model, out, last or None)
    results = {
        **run_info,
        "steps": step,
        "history": history,
        "seconds": seconds,
        "train_samples_per_second": samples / seconds if seconds else None,
        "saved": saved,
    }
    if accelerator.is_main_process:
        write_text_atomic(out / "results.json", json.dumps(results, indent=2, default=str))
    accelerator.end_training()
    return results


__all__ = ["CheckpointError", "base_bridge", "evaluate", "save_final", "train"]
