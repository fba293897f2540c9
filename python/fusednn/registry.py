"""Registry: the one mechanism by which layers, losses, optimizers, learning-rate schedules,
activations, initializers, regularizers and metrics are named, looked up and
(de)serialized.

Each family module owns one Registry and registers its entries where they are defined:

    @register                                   # saved under the class name
    class Dense(Layer): ...

    @register(aliases=("mse", "mean_squared_error"))
    class MeanSquaredError(Loss): ...

An entry is a class (or, for metrics and the regularizer shorthands, a function). Names
and aliases are matched case-insensitively, as Keras's; the name an entry is saved under
is kept as given. Deserialization only ever builds a registered entry: nothing is
imported by name, so a saved file cannot run code of its choosing.
"""
from __future__ import annotations


class Registry:
    """The named entries of one family (`kind`, e.g. "loss"); `base` is the class its
    instances share (a Loss), so `get` passes instances through and `serialize` refuses
    anything else."""

    def __init__(self, kind: str, base: type | None = None, module: str | None = None):
        self.kind = kind
        self.base = base
        self.module = module  # where users find `register`, named in error messages
        self._entries: dict[str, object] = {}  # saved name -> entry
        self._names: dict[str, str] = {}  # lower-case name or alias -> saved name

    # ----- registering ---------------------------------------------------------
    def register(self, entry=None, *, name: str | None = None, aliases=()):
        """Adds `entry` under `name` (default: its __name__) and `aliases`; returns it.

        A decorator, bare (`@register`) or with arguments (`@register(aliases=(...))`).
        """
        def add(entry):
            if self.base is not None and isinstance(entry, type) \
                    and not issubclass(entry, self.base):
                raise TypeError(f"{self._where('register')}: expected a "
                                f"{self.base.__name__} subclass, got {entry!r}")
            if not callable(entry):
                raise TypeError(f"{self._where('register')}: expected a class or function, "
                                f"got {entry!r}")
            saved = name or entry.__name__
            existing = self._entries.get(saved)
            if existing is not None and existing is not entry:
                raise ValueError(f"{self._where('register')}: another {self.kind} is already "
                                 f"registered as '{saved}' ({_qualified(existing)})")
            keys = [key.lower() for key in (saved, *aliases)]
            for key in keys:
                taken = self._names.get(key)
                if taken is not None and self._entries[taken] is not entry:
                    raise ValueError(f"{self._where('register')}: the name '{key}' already "
                                     f"means {self.kind} '{taken}'")
            self._entries[saved] = entry
            self._names.update(dict.fromkeys(keys, saved))
            return entry
        return add if entry is None else add(entry)

    # ----- looking up ----------------------------------------------------------
    def entries(self) -> dict[str, object]:
        """A copy of the registry: saved name -> entry."""
        return dict(self._entries)

    def names(self) -> list[str]:
        """Every accepted name and alias (lower case), sorted."""
        return sorted(self._names)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._names

    def lookup(self, name: str):
        """The entry a name or alias means (any case)."""
        saved = self._names.get(name.lower())
        if saved is None:
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of "
                             f"{', '.join(self.names())}")
        return self._entries[saved]

    def saved_name(self, obj) -> str:
        """The name `obj` (an instance of a registered class, or an entry) is saved under."""
        cls = obj if obj in self._entries.values() else type(obj)
        for saved, entry in self._entries.items():
            if entry is cls:
                return saved
        hint = f"; register it with {self.module}.register" if self.module else ""
        raise ValueError(f"{cls.__name__} is not a registered {self.kind} class, so it cannot "
                         f"be saved (it could not be loaded back){hint}")

    # ----- (de)serializing -----------------------------------------------------
    def serialize(self, obj) -> dict:
        """{"class_name": saved name, "config": obj.get_config()}, JSON-serializable."""
        if self.base is not None and not isinstance(obj, self.base):
            raise TypeError(f"{self._where('serialize')} expects a {self._base_name()}, got "
                            f"{type(obj).__name__} {obj!r:.100}")
        return {"class_name": self.saved_name(obj), "config": obj.get_config()}

    def deserialize(self, config):
        """The object {"class_name": ..., "config": {...}} describes, built by the
        registered entry's from_config (or the entry called with the config); a name
        alone means the entry with its defaults, as in Keras."""
        if isinstance(config, str):
            return self.lookup(config)()
        if not isinstance(config, dict) or not isinstance(config.get("class_name"), str) \
                or not isinstance(config.get("config"), dict):
            raise ValueError(f"{self._where('deserialize')}: expected a dict with a "
                             f"'class_name' string and a 'config' dict, got {config!r:.200}")
        saved = self._names.get(config["class_name"].lower())
        if saved is None:
            raise ValueError(f"unknown {self.kind} class {config['class_name']!r}; expected one "
                             f"of {', '.join(sorted(self._entries))}")
        entry = self._entries[saved]
        arguments = dict(config["config"])
        from_config = getattr(entry, "from_config", None)
        return from_config(arguments) if from_config is not None else entry(**arguments)

    def get(self, identifier):
        """Keras's `get`: an instance of `base` as is, a name (a new object of the entry),
        or a serialized dict. Families add what else they accept (None, callables)."""
        if self.base is not None and isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, str):
            return self.lookup(identifier)()
        if isinstance(identifier, dict):
            return self.deserialize(identifier)
        raise TypeError(f"{self.kind} must be a name, a serialized dict or a "
                        f"{self._base_name()}, got {type(identifier).__name__} {identifier!r}")

    # ----- messages ------------------------------------------------------------
    def _where(self, function: str) -> str:
        return f"{self.module}.{function}" if self.module else function

    def _base_name(self) -> str:
        if self.base is None:
            return f"registered {self.kind}"
        return f"{self.module or self.base.__module__}.{self.base.__name__}"


def _qualified(entry) -> str:
    return f"{entry.__module__}.{entry.__qualname__}"
