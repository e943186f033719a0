"""The error family and the registry of pluggable parts, torch-free (the CLI imports them without the model stack).

Every error raised on bad input is an :class:`HfBridgesError` and also the builtin a caller would catch
(``ValueError`` for bad values). :class:`Registry` is the one mechanism for pluggable parts (projections,
aggregations, poolings, datasets, ...), as peft registers methods and timm models: a decorator adds a named part
with metadata, a duplicate is refused and an unknown name is answered with the closest one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar


class HfBridgesError(Exception):
    """Base of every error raised by hf_bridges for bad input, files or state; the message names the fix."""


class ConfigError(HfBridgesError, ValueError):
    """A config value (YAML preset, ``BridgeConfig`` field, head config) is missing, of the wrong type or unknown."""


class InputError(HfBridgesError, ValueError):
    """Inputs a bridge cannot use (wrong dtype or width, empty rows, invalid text, mismatched labels); says why."""


class UnknownNameError(ConfigError, KeyError):
    """A name that no registry holds; the message suggests the closest registered one."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a registered name is close to ``value``, else an empty string."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """A read-only mapping ``name -> part`` that only :meth:`register` extends."""

    def __init__(self, kind: str):
        self.kind = kind  # "projection", "aggregation", ...: used in error messages
        self._items: dict[str, T] = {}
        self._metadata: dict[str, dict[str, Any]] = {}

    def register(self, name: str, item: T | None = None, *, override: bool = False, **metadata: Any) -> Any:
        """Register ``item`` under ``name``; without ``item``, return a decorator that does."""

        def add(obj: T) -> T:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")
            if name in self._items and not override:
                raise ValueError(f"{self.kind} {name!r} is already registered; pass override=True to replace it")
            self._items[name] = obj
            self._metadata[name] = dict(metadata)
            return obj

        return add if item is None else add(item)

    def unregister(self, name: str) -> T:
        """Remove ``name`` (for tests and plugins that replace a part); returns what was registered."""
        item = self.get(name)
        del self._items[name], self._metadata[name]
        return item

    def get(self, name: str, default: Any = ...) -> T:  # type: ignore[override]
        """The part named ``name``; an unknown name raises :class:`UnknownNameError` with the valid names."""
        if isinstance(name, str) and name in self._items:
            return self._items[name]
        if default is not ...:
            return default
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}; valid {self.kind}s: {sorted(self._items)}"
        )

    def check(self, name: str) -> str:
        """``name`` when registered, else the same error as :meth:`get`."""
        self.get(name)
        return name

    def metadata(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._metadata[name])

    def names(self, **where: Any) -> list[str]:
        """Sorted names, optionally only those whose metadata matches ``where`` (e.g. ``needs_embeddings=True``)."""
        return sorted(n for n in self._items if all(self._metadata[n].get(k) == v for k, v in where.items()))

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._items)})"


def registrar(registry: Registry, **defaults: Any) -> Callable[..., Callable[[T], T]]:
    """A ``register_<kind>(name, **metadata)`` decorator bound to ``registry`` (the public spelling per kind)."""

    def register(name: str, *, override: bool = False, **metadata: Any) -> Callable[[T], T]:
        return registry.register(name, override=override, **{**defaults, **metadata})

    return register
