"""Hostile inputs (issue 20): config values, CSV files, features, texts, labels, stitch-cache shards and checkpoints
that raised raw exceptions, were silently accepted or got misleading messages; each now gets one HfBridgesError line.

Items: 4 (a full disk by RLIMIT_FSIZE, no root needed), 6 (empty CSV), 7 (CLI num_anchors / learning_rate, Latin-1
CSV, stitch-cache shard of another width, int64 features, lone surrogate, max_seq_length above the encoder's
positions, float labels, an empty text with a tokenizer that adds no special tokens), 8 (features x 1e20, a foreign
``random_states_0.pkl`` on --resume, RNG state without pickle), 9 (checkpoint file modes).
"""

from __future__ import annotations

import csv
import pickle
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import make_encoder, make_tokenizer, topic_texts
from stitch_helpers import tiny_config
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from hf_bridges import BridgeForSequenceClassification, HfBridgesError
from hf_bridges._io import current_umask
from hf_bridges.cli import main
from hf_bridges.modeling.modeling_bridge import InputError

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def model(tokenizer):
    texts, _ = topic_texts(4, seed=123)
    return BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=texts, tokenizer=tokenizer, num_labels=5
    ).eval()


def one_error_line(err: str, command: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith(f"hf-bridges {command}: error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


# ------------------------------------------------------------------------------------------ CLI config values
@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("anchors", "num_anchors", "many", "anchors.num_anchors must be a whole number, got 'many' (str)"),
        ("training", "learning_rate", "fast", "training.learning_rate must be a number, got 'fast' (str)"),
        ("training", "num_epochs", 2.5, "training.num_epochs must be a whole number, got 2.5 (float)"),
    ],
)
def test_stitch_config_values_of_the_wrong_type_fail_before_any_work(tmp_path, capsys, section, key, value, message):
    """The first landing: ``TypeError: can only concatenate str`` for num_anchors; learning_rate embedded first."""
    data = tmp_path / "data.csv"
    data.write_text("body,topic\nmarket stock,0\nfilm star,1\n")
    config = tiny_config(["unused-encoder"], str(data))
    config[section][key] = value
    path = tmp_path / "stitch.yaml"
    path.write_text(yaml.safe_dump(config))
    cache = tmp_path / "cache"
    assert main(["stitch", str(path), "--output-dir", str(tmp_path / "out"), "--cache-dir", str(cache)]) == 1
    assert message in one_error_line(capsys.readouterr().err, "stitch")
    assert not cache.exists()


def test_a_yaml_number_written_as_1e_minus_3_is_read_as_a_number(tmp_path):
    from hf_bridges.stitching import parse_config

    config = tiny_config(["enc"], str(tmp_path / "x.csv"))
    config["training"]["learning_rate"] = "1e-3"  # YAML 1.1 reads 1e-3 as a string
    assert parse_config(config).training.learning_rate == 1e-3


# --------------------------------------------------------------------------------------------------- CSV files
def _csv(path: Path, rows, encoding: str = "utf-8") -> str:
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return str(path)


def test_an_empty_csv_names_the_file(tmp_path):
    """The first landing: datasets' ``Instruction "train" corresponds to no data!`` naming neither file nor fix."""
    from hf_bridges.data import load_labelled_dataset

    path = _csv(tmp_path / "empty.csv", [])
    with pytest.raises(HfBridgesError, match=rf"{path} hold\(s\) no rows \(empty, or a header only\)"):
        load_labelled_dataset("files", data_files=path)


def test_a_latin1_csv_names_the_file_the_encoding_and_the_fix(tmp_path):
    """The first landing: a full ``DatasetGenerationError`` traceback."""
    from hf_bridges.data import load_labelled_dataset

    rows = [(f"caf\xe9 market {i}", i % 2) for i in range(20)]
    path = _csv(tmp_path / "latin.csv", rows, encoding="latin-1")
    with pytest.raises(HfBridgesError) as caught:
        load_labelled_dataset("files", data_files=path)
    message = str(caught.value)
    assert message.startswith(f"{path} is not UTF-8 text") and "\n" not in message
    assert "iconv -f latin1 -t utf-8" in message and "encoding: latin-1" in message
    loaded = load_labelled_dataset("files", data_files=path, encoding="latin-1")  # the fix it names works
    assert any("caf\xe9" in text for text in loaded["train"]["text"])


# ---------------------------------------------------------------------------------------- stitch-cache shards
def test_a_stitch_cache_shard_of_another_width_is_removed_and_named(tmp_path):
    """The first landing: numpy's ``all the input array dimensions ... must match exactly``."""
    import datasets

    from hf_bridges.stitching.cache import SHARD_ROWS, EmbeddingCache

    data = datasets.Dataset.from_dict({"text": [f"text {i}" for i in range(SHARD_ROWS + 20)]})

    def embedder(width):
        return lambda: lambda batch: np.stack([np.full(width, len(t), dtype=np.float32) for t in batch["text"]])

    cache = EmbeddingCache(tmp_path / "cache")
    identity = {"id": "enc"}
    first = cache.embeddings(identity, data, "text", embedder(8), progress=False)
    folder = cache.folder(identity, data._fingerprint)
    other = EmbeddingCache(tmp_path / "other")
    other.embeddings(identity, data, "text", embedder(4), progress=False)
    shard = f"shard-{SHARD_ROWS:08d}"
    (folder / "manifest.json").unlink()
    import shutil

    shutil.rmtree(folder / shard)
    shutil.copytree(other.folder(identity, data._fingerprint) / shard, folder / shard)
    with pytest.raises(HfBridgesError, match=r"held shards of different widths \[4, 8\] .*removed: rerun"):
        cache.embeddings(identity, data, "text", embedder(8), progress=False)
    assert not folder.exists()
    np.testing.assert_array_equal(cache.embeddings(identity, data, "text", embedder(8), progress=False), first)


# ------------------------------------------------------------------------------------- features, texts, labels
def test_integer_features_are_refused_not_cast(model):
    with pytest.raises(InputError, match="features must be floating-point embeddings .*got torch.int64"):
        model(features=torch.ones(2, 32, dtype=torch.int64))
    with pytest.raises(InputError, match="got torch.bool"):
        model(features=torch.ones(2, 32, dtype=torch.bool))


def test_finite_features_that_overflow_the_head_raise(model):
    """The first landing returned NaN logits for features x 1e20, without a word."""
    features = model.embed(**model.tokenize(["market stock bank", "film star"]))
    assert torch.isfinite(model(features=features).logits).all()
    with pytest.raises(InputError, match=r"the head produced non-finite logits \(NaN or inf\)"):
        model(features=features * 1e20)


def test_a_lone_surrogate_is_named(model):
    """The first landing: tokenizers' ``TextEncodeInput must be Union[...]``."""
    with pytest.raises(InputError, match=r"text 1 \('film \\ud800 star'\) is not valid Unicode text"):
        model.tokenize(["market", "film \ud800 star"])
    with pytest.raises(InputError, match=r"text 1 \('film \\ud800 star'\) is not valid Unicode text"):
        model.encode(["market", "film \ud800 star"])  # the text API tokenises through the same check
    texts, _ = topic_texts(2, seed=1)
    with pytest.raises(InputError, match="text 3 .* is not valid Unicode text"):
        BridgeForSequenceClassification.from_encoder(
            make_encoder(0), anchors=[*texts[:3], "bad \udfff", *texts[3:]], tokenizer=make_tokenizer(), num_labels=5
        )


def test_float_labels_for_a_multiclass_head_are_named(model):
    """The first landing: torch's ``Target size (torch.Size([2])) must be the same as input size``."""
    batch = model.tokenize(["market", "film"])
    with pytest.raises(InputError, match=r"labels of dtype torch.float32 and shape \[2\] for 5 classes.*labels.long"):
        model(**batch, labels=torch.tensor([0.0, 1.0]))
    assert model(**batch, labels=torch.tensor([0, 1])).loss is not None
    multi_hot = torch.zeros(2, 5)
    multi_hot[0, 1] = 1
    model.config.problem_type = None
    try:
        assert model(**batch, labels=multi_hot).loss is not None  # multi-label rows still work
    finally:
        model.config.problem_type = None


def test_an_empty_text_with_a_tokenizer_without_special_tokens_is_named():
    """The first landing: ``cannot reshape tensor of 0 elements into shape [1, 0, -1, 8]``."""
    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "market", "stock", "film", "star", "bank", "music"])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    bare = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]")
    bridge = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=["market stock", "film star", "bank music"], tokenizer=bare, num_labels=2
    )
    with pytest.raises(InputError, match=r"the 1 input\(s\) hold no tokens \(empty texts"):
        bridge(**bridge.tokenize([""]))


def test_max_seq_length_above_the_encoders_positions_is_clamped(caplog):
    """The first landing: ``The expanded size of the tensor (100) must match the existing size (64)``."""
    texts, _ = topic_texts(2, seed=1)
    long = " ".join(["market"] * 100)
    with caplog.at_level("WARNING"):
        bridge = BridgeForSequenceClassification.from_encoder(
            make_encoder(0), anchors=[*texts, long], tokenizer=make_tokenizer(), num_labels=5, max_seq_length=128
        )
    assert bridge.config.max_seq_length == 64  # the tiny encoder's max_position_embeddings
    assert "max_seq_length=128 is above what the encoder takes (max_position_embeddings=64): clamped to 64" in (
        caplog.text
    )
    assert bridge(**bridge.tokenize([long])).logits.shape == (1, 5)


def test_fit_max_seq_length_knows_robertas_offset():
    from transformers import RobertaConfig

    from hf_bridges.building.loading import fit_max_seq_length

    assert fit_max_seq_length(RobertaConfig(max_position_embeddings=514, pad_token_id=1), 1024) == 512
    assert fit_max_seq_length(RobertaConfig(max_position_embeddings=514, pad_token_id=1), 256) == 256


# ---------------------------------------------------------------------------------------------- checkpoints
@pytest.fixture
def accelerate_state():
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _checkpoint(out: Path):
    from accelerate import Accelerator

    from hf_bridges.training.checkpoint import install_prefix_hooks, save_checkpoint

    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 2)
    model, _ = accelerator.prepare(model, torch.optim.AdamW(model.parameters()))
    install_prefix_hooks(accelerator, model)
    return accelerator, save_checkpoint(accelerator, out, 1, {"epoch": 0})


def test_checkpoints_hold_rng_state_without_pickle_and_restore_it(tmp_path, accelerate_state):
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    accelerator, checkpoint = _checkpoint(tmp_path)
    assert sorted(p.name for p in checkpoint.iterdir() if "rng" in p.name or "random" in p.name) == [
        "rng_state_0.safetensors"
    ]
    assert not list(checkpoint.rglob("*.pkl"))
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    accelerator.load_state(str(checkpoint))  # the hook restores all three generators
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]


def test_checkpoint_files_get_the_package_file_mode(tmp_path, accelerate_state):
    """Item 9: ``model.safetensors`` was 0600 (safetensors' save_file), every other file 0644."""
    _, checkpoint = _checkpoint(tmp_path)
    modes = {p.name: p.stat().st_mode & 0o777 for p in checkpoint.rglob("*") if p.is_file()}
    assert "model.safetensors" in modes
    assert set(modes.values()) == {0o666 & ~current_umask()}, modes


def test_a_foreign_rng_pickle_on_resume_is_refused(tmp_path, accelerate_state):
    """The first landing swallowed a well-formed foreign ``random_states_0.pkl`` and exited 0."""
    from hf_bridges.training.checkpoint import CheckpointError, resolve_checkpoint

    _, checkpoint = _checkpoint(tmp_path)
    foreign = checkpoint / "random_states_0.pkl"
    with open(foreign, "wb") as handle:
        pickle.dump({"random_state": random.getstate()}, handle)
    with pytest.raises(CheckpointError, match=rf"checkpoint file {foreign} is refused \(a pickle"):
        resolve_checkpoint("latest", tmp_path)


# ------------------------------------------------------------------------------- 4: a full disk without root
FULL_DISK = """
import resource, signal, sys
sys.path.insert(0, {tests!r})
from helpers import make_encoder, make_tokenizer, topic_texts
from hf_bridges import BridgeForSequenceClassification
from hf_bridges.heads.files import HeadSaveError
texts, _ = topic_texts(4, seed=123)
model = BridgeForSequenceClassification.from_encoder(make_encoder(0), anchors=texts, tokenizer=make_tokenizer(),
                                                     num_labels=5)
model.save_head({target!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    model.save_head({target!r})
except HeadSaveError as error:
    print("ERROR", error)
"""


@pytest.mark.subprocess
def test_save_head_past_the_file_size_limit_names_the_folder_and_keeps_the_old_head(tmp_path):
    from hf_bridges.heads.format import read_head

    target = tmp_path / "head"
    script = FULL_DISK.format(tests=str(TESTS), target=str(target))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith(f"ERROR could not write the head to {target} (") and "previous head there is intact" in line
    assert read_head(target).config["num_anchors"] == 20
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
