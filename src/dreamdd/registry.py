"""ONE Registry class for every kind of named thing (timm's register_model / create_model / list_models): models,
methods, selectors, datasets and evaluation protocols. A registry is the only list of its names: the command
line's choices, the settings' validation and the README's lists come from it.

An entry is a value (a factory, or data such as a protocol's settings) or, for entries named before their module
is imported, "module:attribute" inside dreamdd, imported when first used: listing the methods or selectors (for
`dreamdd --help`) imports no torch.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any, Callable, Iterator, Mapping

from .errors import DreamddError


class Registry(Mapping[str, Any]):
    """Names -> entries of one `kind`; `aliases` are other spellings accepted but not listed; `loader` is a module
    whose import registers further entries (e.g. the model zoo) before the names are listed."""

    def __init__(self, kind: str, entries: dict[str, Any] | None = None, aliases: dict[str, str] | None = None,
                 loader: str | None = None, plural: str | None = None):
        self.kind, self.plural = kind, plural or f"{kind}s"
        self._entries: dict[str, Any] = dict(entries or {})
        self.aliases = dict(aliases or {})
        self._loader = loader

    def register(self, name: str | None = None) -> Callable[[Any], Any]:
        """Decorator: register a factory under `name` (default: its __name__)."""
        def wrap(factory):
            self.add(name or factory.__name__, factory)
            return factory
        return wrap

    def add(self, name: str, entry: Any) -> None:
        old = self._entries.get(name)
        if old is not None and old is not entry and not isinstance(old, str):
            raise ValueError(f"{self.kind} name '{name}' is already registered")
        self._entries[name] = entry

    def key(self, name: str) -> str | None:
        """The registered name `name` stands for (itself or an alias's target), or None."""
        self._load()
        name = self.aliases.get(name, name)
        return name if name in self._entries else None

    def __getitem__(self, name: str) -> Any:
        key = self.key(name)
        if key is None:
            raise DreamddError(f"unknown {self.kind} '{name}'; known {self.plural}: {', '.join(self.names())}")
        entry = self._entries[key]
        if isinstance(entry, str) and ":" in entry:     # named before its module was imported
            module, attribute = entry.split(":")
            entry = self._entries[key] = getattr(import_module(f"dreamdd.{module}"), attribute)
        return entry

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if self.key(name) is not None else default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.key(name) is not None

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def names(self, aliases: bool = False) -> list[str]:
        """The registered names, sorted (with the aliases too when asked)."""
        self._load()
        return sorted([*self._entries, *(self.aliases if aliases else ())])

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """The entry `name` called with the arguments (a factory's product)."""
        return self[name](*args, **kwargs)

    def _load(self) -> None:
        if self._loader is not None:
            loader, self._loader = self._loader, None
            import_module(f"dreamdd.{loader}")


MODELS = Registry("model", loader="models")
METHODS = Registry("method", {"idc": "methods.idc:IDC", "dc": "methods.dc:DC", "dsa": "methods.dc:DSA",
                              "dm": "methods.dm:DM", "mtt": "methods.mtt:MTT",
                              "dreamplus": "methods.dreamplus:DreamPlus"})
SELECTORS = Registry("selector", {"random": "selection.random:RandomSelector",
                                  "herding": "selection.greedy:HerdingSelector",
                                  "kcenter": "selection.greedy:KCenterSelector",
                                  "dream": "selection.representative:RepresentativeSelector"},
                     aliases={"representative": "dream"})


def coreset_methods() -> list[str]:
    """The coreset baselines of `dreamdd select`: every selector, DREAM's under its descriptive name."""
    return ["representative" if name == "dream" else name for name in SELECTORS]
