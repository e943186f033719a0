"""Renamed config keys, one mechanism for every config dataclass (as sentence-transformers' ``config_key_renames``):
a class lists its old spellings in ``RENAMES`` (old -> new); :func:`read_keys` applies them, with a FutureWarning,
wherever a mapping becomes that class (its constructor, its YAML loader, ``key=value`` overrides), and the old name
stays a readable attribute for one release. A class may also fold keys that moved into a nested group
(``fold_old_keys``, e.g. a training config's flat head fields)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from .logging import user_stacklevel
from .modeling.registry import ConfigError

C = TypeVar("C", bound=type)


def renamed(old: str, new: str, where: str = "config") -> None:
    warnings.warn(
        f"{where}: {old!r} is deprecated and will be removed in the next release; write {new!r}",
        FutureWarning,
        stacklevel=user_stacklevel(),
    )


def read_keys(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` with ``cls.RENAMES`` applied (refusing an old and a new spelling together), then ``cls``'s fold."""
    data = dict(data)
    for old, new in getattr(cls, "RENAMES", {}).items():
        if old in data:
            if new in data:
                raise ConfigError(f"{where}: both {old!r} (deprecated) and {new!r} given; keep only {new!r}")
            renamed(old, new, where)
            data[new] = data.pop(old)
    fold: Callable[[dict, str], dict] | None = getattr(cls, "fold_old_keys", None)
    return fold(data, where) if fold is not None else data


def reads_old_keys(where: str) -> Callable[[C], C]:
    """Class decorator: ``cls(old=...)`` goes through :func:`read_keys` and ``obj.old`` reads ``obj.new``."""

    def decorate(cls: C) -> C:
        init = cls.__init__

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **read_keys(cls, kwargs, where))

        __init__.__wrapped__ = init  # type: ignore[attr-defined]
        cls.__init__ = __init__  # type: ignore[misc]
        for old, new in cls.RENAMES.items():  # type: ignore[attr-defined]
            alias = property(lambda self, n=new: getattr(self, n), lambda self, value, n=new: setattr(self, n, value))
            setattr(cls, old, alias)
        return cls

    return decorate
