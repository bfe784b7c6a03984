"""Name -> constructor registries, so configs select components by name."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from facerec.errors import ConfigError

T = TypeVar("T")


def suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


class Registry(Generic[T]):
    """A named collection of constructors with argument checking at build time."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, *names: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(fn: Callable[..., T]) -> Callable[..., T]:
            for name in names:
                if name in self._entries:
                    raise ValueError(f"{self.kind} '{name}' registered twice")
                self._entries[name] = fn
            return fn

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} '{name}'. Available: {', '.join(self.names())}." + suggest(name, self.names())
            )
        return self._entries[name]

    def build(self, name: str, **kwargs: Any) -> T:
        fn = self.get(name)
        check_kwargs(fn, kwargs, f"{self.kind} '{name}'")
        return fn(**kwargs)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


def check_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any], what: str) -> None:
    """Reject keyword arguments that `fn` does not accept, naming the valid ones."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in kwargs:
        if key not in valid:
            raise ConfigError(f"{what} has no option '{key}'. Valid options: {', '.join(valid)}." + suggest(key, valid))
