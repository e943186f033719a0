"""Saving and loading helpers of the bridge models: checkpoint key renames, the staged save, weight checks.

Part of the remote-code set: only the standard library, torch and transformers (hf_bridges._io when installed).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

from .bridge_arguments import _hub

# The head is registered as ``score`` (peft's SEQ_CLS recipe then trains and saves all of it) and its MLP as
# ``score.mlp``; files keep the historic names. Old key -> new key, first match wins (peft's adapter key_mapping):
_KEY_RENAMES = {r"^head\.classifier\.": "score.mlp.", r"^head\.": "score."}
# The same as a chain for the transformers >= 5 loader (each rename sees the previous one's output); the saver
# applies it reversed, so model.safetensors keeps ``head.*`` / ``head.classifier.*`` and older releases read it.
_LOADER_RENAMES = ((r"^head\.", "score."), (r"^score\.classifier\.", "score.mlp."))
_PREVIOUS = ".hf_bridges-previous"  # an unfinished save's journal (hf_bridges._io.publish_files)
# from_pretrained arguments that say where the weights came from: the lazily loaded tokenizer comes from there too
_PUSH_ARGS = ("push_to_hub", "repo_id", "token", "private", "commit_message", "create_pr")
_TOKENIZER_SOURCE = ("revision", "subfolder", "token", "cache_dir", "local_files_only", "force_download", "proxies")


def register_key_renames(class_name: str) -> None:
    """Teach the transformers loader (and, reversed, the saver) the renames, by class name: that is what makes it
    apply them to custom and remote-code classes."""
    try:
        from transformers.conversion_mapping import register_checkpoint_conversion_mapping
        from transformers.core_model_loading import WeightRenaming
    except ImportError:  # transformers 4.x: reads the `_checkpoint_conversion_mapping` class attribute instead
        return
    register_checkpoint_conversion_mapping(
        class_name, [WeightRenaming(source, target) for source, target in _LOADER_RENAMES], overwrite=True
    )


class HeadAsScore:
    """Mixin of the bridge models: the head is registered as ``score`` (the transformers name of a sequence
    classification head, which peft's SEQ_CLS recipe wraps, trains and saves whole); ``model.head`` reads and
    assigns it. Every subclass teaches the loader and peft the historic key names."""

    _checkpoint_conversion_mapping = dict(_KEY_RENAMES)  # peft's PeftModel.from_pretrained default key_mapping

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_key_renames(cls.__name__)

    def _load_historic_keys(self) -> None:
        """Raw ``load_state_dict`` of a file's keys (Trainer's best-model reload, Accelerate) finds ``score``."""
        from .head import _rename_prefix

        self.register_load_state_dict_pre_hook(_rename_prefix("head.", "score."))

    @property
    def head(self) -> Any:
        return self._modules["score"]

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__("score" if name == "head" else name, value)


class StagedSaveLoad:
    """Mixin of the bridge models (before ``PreTrainedModel``): ``save_pretrained`` staged and journaled,
    ``from_pretrained`` checked (a corrupted file named, an interrupted save warned about)."""

    _extra_auto_map: dict = {}  # e.g. the image model's Auto entry, set by the class that ships its file

    # -------------------------------------------------------------------------------------------- head-only I/O
    stitch_report = None  # set by from_encoder(..., head=...): how well this encoder's anchor space matches the head's

    def save_head(self, save_directory, **kwargs):
        """Write only the head (weights, raw anchors, config, anchor space, card) to a folder, atomically."""
        return _hub().save_head(self, save_directory, **kwargs)

    def push_head_to_hub(self, repo_id: str, **kwargs):
        """Push only the head to a Hub model repo; attach it anywhere with ``from_encoder(encoder, head=repo_id)``."""
        return _hub().push_head_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Also names a corrupted weights file, warns about an interrupted save, and remembers the encoder state the
        saved anchors match now (peft may inject LoRA before the first forward: then they are re-embedded)."""
        model = checked_load(super().from_pretrained, pretrained_model_name_or_path, args, kwargs)
        bridge = model[0] if isinstance(model, tuple) else model  # output_loading_info=True
        # its tokenizer is loaded on first use (tokenize, encode, save, push) from the same place and revision
        bridge._tokenizer_source = {key: kwargs[key] for key in _TOKENIZER_SOURCE if kwargs.get(key) is not None}
        if getattr(bridge, "encoder", None) is not None and bool(bridge.anchors.is_fresh):
            bridge._anchor_snapshot = bridge._encoder_state()
        return model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Tokenizer included, staged (``bridge_io.staged_save``: never a truncated file, config last). A bridge
        without a name takes the folder's: peft adapters then record a loadable ``base_model_name_or_path``."""
        # Ship every Auto class, not only this one's, so a trust_remote_code user can pick any of them.
        self.config.auto_map = {
            "AutoConfig": "configuration_bridge.BridgeConfig",
            "AutoModel": "modeling_bridge.BridgeModel",
            "AutoModelForSequenceClassification": "modeling_bridge.BridgeForSequenceClassification",
            **self._extra_auto_map,  # e.g. the image model's entry, set by the class that ships its file
        }
        target = os.path.abspath(os.fspath(save_directory))
        if kwargs.get("is_main_process", True) and not kwargs.get("push_to_hub"):
            result = staged_save(self, super().save_pretrained, target, args, kwargs)
        else:  # rank > 0 writes nothing of its own; a push names the repo after the folder
            result = super().save_pretrained(save_directory, *args, **kwargs)
            # a reloaded bridge's tokenizer is loaded lazily: load it to save it
            tokenizer = self._get_tokenizer() if kwargs.get("is_main_process", True) else None
            if tokenizer is not None:  # the model's push is done by now: the tokenizer pushes its own files
                tokenizer.save_pretrained(save_directory, **{k: kwargs[k] for k in _PUSH_ARGS if k in kwargs})
        if not self.__dict__.get("name_or_path"):
            self.name_or_path = target  # peft reads model.__dict__["name_or_path"]
        if kwargs.get("is_main_process", True) and not kwargs.get("push_to_hub"):
            _write_card(self, target)  # README.md: the bridge's card (a user's own card is kept)
        return result

    def _upload_modified_files(self, working_dir, repo_id, *args, **kwargs):
        """transformers' push step (``push_to_hub``, ``save_pretrained(push_to_hub=True)``): the README it put in
        ``working_dir`` (the repo's card or its blank template) becomes the bridge's card before the upload."""
        _write_card(self, working_dir, repo_id)
        return super()._upload_modified_files(working_dir, repo_id, *args, **kwargs)


def _write_card(model: Any, folder: str, repo_id: str | None = None) -> None:
    """``hf_bridges.heads.cards.write_model_card`` when the package is installed (not in remote code)."""
    try:
        from hf_bridges.heads.cards import write_model_card
    except ImportError:
        return
    write_model_card(model, folder, repo_id)


def checked_load(load: Callable[..., Any], source: Any, args: tuple, kwargs: dict) -> Any:
    """``load(source, ...)``, warning about an interrupted save's journal and naming a corrupted weights file."""
    folder = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    local = folder is not None and os.path.isdir(folder)
    if local and os.path.isdir(os.path.join(folder, _PREVIOUS)):
        warnings.warn(
            f"{folder}: an interrupted save_pretrained left the previous version's files in "
            f"{os.path.join(folder, _PREVIOUS)}; loading the folder as it is (possibly mixed). Put the "
            f"previous version back with `hf-bridges head recover {folder}`",
            stacklevel=3,
        )
    try:
        return load(source, *args, **kwargs)
    except Exception as error:
        broken = corrupted_weights(folder) if local else None
        if broken is None:
            raise
        raise OSError(
            f"{broken} is truncated or corrupted ({type(error).__name__}: {error}); save the model again "
            "or restore that file (after an interrupted save: `hf-bridges head recover FOLDER`)"
        ) from None


def staged_save(model: Any, save: Callable[..., Any], target: str, args: tuple, kwargs: dict) -> Any:
    """Run ``save`` (``PreTrainedModel.save_pretrained``) into a staging folder next to ``target``, then move the
    files in, ``config.json`` last (journaled by ``hf_bridges._io.publish_files`` when the package is installed)."""
    parent, base = os.path.split(target)
    os.makedirs(parent or ".", exist_ok=True)
    _remove_dead_staging(parent, base)
    staging = tempfile.mkdtemp(prefix=f".{base}.tmp-{os.getpid()}-", dir=parent)
    try:
        result = save(staging, *args, **kwargs)
        tokenizer = model._get_tokenizer() if hasattr(model, "_get_tokenizer") else model.tokenizer
        if tokenizer is not None:  # a reloaded bridge's is loaded lazily: load it to save it
            tokenizer.save_pretrained(staging)
        names = sorted(
            (n for n in os.listdir(staging) if os.path.isfile(os.path.join(staging, n))),
            key=lambda n: n == "config.json",
        )  # config last
        mode = 0o666 & ~_umask()
        for name in names:
            os.chmod(os.path.join(staging, name), mode)
        try:
            from hf_bridges._io import publish_files  # journaled: the replaced files are kept until the last is in
        except ImportError:  # remote code without the package: whole files only
            publish_files = None
        if publish_files is not None:
            publish_files(staging, target, names)
        else:
            os.makedirs(target, exist_ok=True)
            for name in names:
                os.replace(os.path.join(staging, name), os.path.join(target, name))
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_dead_staging(parent: str, base: str) -> None:
    """Staging folders of killed saves (``.NAME.tmp-PID-*`` whose process is gone)."""
    prefix = f".{base}.tmp-"
    for name in os.listdir(parent or "."):
        pid = name[len(prefix) :].split("-", 1)[0] if name.startswith(prefix) else ""
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except OSError:
            pass


def corrupted_weights(folder: str) -> str | None:
    """The first ``*.safetensors`` file in ``folder`` whose header or size is wrong, else None."""
    try:
        from safetensors import safe_open
    except ImportError:
        return None
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".safetensors"):
            continue
        path = os.path.join(folder, name)
        try:
            with safe_open(path, framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (a safetensors handle is no dict)
                    handle.get_slice(key)
                end = max((o[1] for o in _data_offsets(path)), default=0)
            if os.path.getsize(path) < end:
                return path
        except Exception:
            return path
    return None


def _data_offsets(path: str) -> list:
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    return [
        (8 + size + start, 8 + size + stop)
        for key, value in header.items()
        if key != "__metadata__"
        for start, stop in [value["data_offsets"]]
    ]
