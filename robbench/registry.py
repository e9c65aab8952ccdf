"""One generic registry for architectures, datasets, threat models and attacks.

Built-in entries register with a decorator in their own module; those modules are imported
only when a registry is first searched, so ``import robbench`` stays light. Third-party
packages add entries through an entry-point group; an entry point is loaded only when its
name is asked for (or when the full list is printed).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Callable, Generic, TypeVar

from .errors import RobbenchError, first_line, quoted

T = TypeVar("T", bound=Callable)


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable
    source: str  # "built-in" or the distribution/module that provided it
    description: str
    #: the factory's parameters an untrusted (hub) model.yaml may set; datasets: those that name no file
    hub_params: frozenset[str] = frozenset()


class Registry(Generic[T]):
    def __init__(self, kind: str, builtin_modules: tuple[str, ...], entry_point_group: str | None):
        self.kind = kind
        self._builtin_modules = builtin_modules
        self._group = entry_point_group
        self._entries: dict[str, Entry] = {}
        self._builtins_loaded = False

    def register(self, name: str, *, description: str = "", hub_params: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator: ``@ARCHITECTURES.register("small-cnn")``; ``hub_params``: see ``Entry``."""

        def decorator(factory: T) -> T:
            if name in self._entries and self._entries[name].factory is not factory:
                raise RobbenchError(f"{self.kind} {name!r} is registered twice; rename one of them")
            text = description or first_line(factory.__doc__)
            self._entries[name] = Entry(name, factory, _source_of(factory), text, frozenset(hub_params))
            return factory

        return decorator

    def get(self, name: str) -> Entry:
        self._load_builtins()
        if name not in self._entries:
            self._load_entry_point(name)
        if name not in self._entries:
            known = self.names()
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RobbenchError(f"unknown {self.kind} {quoted(name)}{hint}; known: {', '.join(known)}")
        return self._entries[name]

    def names(self) -> list[str]:
        self._load_builtins()
        plugin_names = {ep.name for ep in self._plugin_entry_points()}
        return sorted(set(self._entries) | plugin_names)

    def entries(self) -> list[Entry]:
        """Every entry, plugins loaded: for ``robbench list``."""
        for name in self.names():
            if name not in self._entries:
                self._load_entry_point(name)
        return [self._entries[n] for n in sorted(self._entries)]

    def _load_builtins(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for module in self._builtin_modules:
                importlib.import_module(module)

    def _plugin_entry_points(self) -> list[EntryPoint]:
        return list(entry_points(group=self._group)) if self._group else []

    def _load_entry_point(self, name: str) -> None:
        for ep in self._plugin_entry_points():
            if ep.name != name:
                continue
            try:
                loaded = ep.load()
            except Exception as exc:  # a broken plugin must not take the whole tool down
                raise RobbenchError(
                    f"plugin {ep.value!r} for {self.kind} {name!r} failed to import: {exc}; "
                    "fix or uninstall that package"
                ) from exc
            if name not in self._entries:  # a plain callable, not a module that self-registers
                dist = ep.dist.name if ep.dist else ep.module
                hub_params = frozenset(getattr(loaded, "hub_params", ()))  # a plugin declares them on its factory
                self._entries[name] = Entry(name, loaded, dist, first_line(loaded.__doc__), hub_params)
            return


def _source_of(factory: Callable) -> str:
    module = getattr(factory, "__module__", "") or ""
    return "built-in" if module.startswith("robbench.") else module
