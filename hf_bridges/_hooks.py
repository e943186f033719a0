"""Registering with transformers when its parts are imported, so ``import hf_bridges`` stays light.

``AutoModel.from_pretrained(<bridge folder>)`` needs the bridge classes registered with the Auto classes, and
``pipeline(task, model=<bridge object>)`` needs the bridge pipelines; both cost the model stack (torch,
transformers' modeling code: seconds). They are registered when transformers' own Auto / pipelines modules are
first executed (or at once when they already are), never from how the process was started: a CLI that only prints
its help imports neither, a program that uses the Auto classes gets them registered.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

AUTO_MODELS = "transformers.models.auto.modeling_auto"
AUTO_CONFIG = "transformers.models.auto.configuration_auto"
PIPELINES = "transformers.pipelines"


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``callback(module)`` right after the module ``name`` is first executed, then steps aside."""

    def __init__(self, name: str, callback: Callable[[Any], None]):
        self.name, self.callback = name, callback

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != self.name:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module, callback = loader.exec_module, self.callback

        def exec_and_register(module: Any) -> None:
            exec_module(module)
            with contextlib.suppress(Exception):  # never break an import (the Auto classes then need trust_remote_code)
                callback(module)

        loader.exec_module = exec_and_register
        return spec


def after_import(name: str, callback: Callable[[Any], None]) -> None:
    """``callback(module)`` now if ``name`` is imported, else right after it is."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
    elif not any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, callback))


def _initializing(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def _register_models(_: Any = None) -> None:
    from .auto import BridgeConfig  # noqa: F401  (importing hf_bridges.auto registers every class)


def _register_config(configuration_auto: Any) -> None:
    """The config alone (``AutoConfig.from_pretrained`` users): the model classes wait for ``modeling_auto``, which
    the modeling files never import at import time. transformers' config module may load while ours is importing
    (PretrainedConfig pulls it in): then ours registers when the model hook runs."""
    if not _initializing("hf_bridges.modeling.configuration_bridge"):
        from .modeling.configuration_bridge import BridgeConfig

        configuration_auto.AutoConfig.register(BridgeConfig.model_type, BridgeConfig, exist_ok=True)


def _register_pipelines(module: Any) -> None:
    from .pipelines import register_bridge_pipelines

    register_bridge_pipelines(module)


def install() -> None:
    after_import(AUTO_CONFIG, _register_config)
    after_import(AUTO_MODELS, _register_models)
    after_import(PIPELINES, _register_pipelines)
