"""A component is an import path plus keyword arguments (Hydra's ``_target_`` convention).

Built-in components (our models, optimizers, losses, datasets ...) and the user's own go through
the same path: ``Spec.of(node)`` turns a config node into a ``Spec``; ``check`` imports the target
and binds its signature on the driver, before any actor starts, so a typo fails as a
``ConfigError`` naming the key; ``build`` calls it on the worker. Workers never import Hydra.

A node may also hold a Python object instead of a path (``orchestrator.run(model=MyNet)``):
it is shipped to the workers with cloudpickle, as Ray does with any function.

Arguments the orchestrator supplies from context (the model's ``input_shape`` and
``num_outputs``, the optimizer's parameters, ...) are passed only to a target whose signature
names them, unless the config sets them.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

from orchestrator.config.errors import ConfigError

TARGET = "_target_"


@dataclass(frozen=True)
class Spec:
    key: str                                    # the config key, e.g. "model", for error messages
    target: Any                                 # an import path or a Python object (callable)
    kwargs: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, key: str, node: Any, own_keys: Iterable[str] = ()) -> "Spec":
        """``node``: a schema dataclass or a dict with ``_target_``; a callable; or a Spec.
        ``own_keys`` are the orchestrator's settings in that section (not the target's arguments)."""
        if isinstance(node, Spec):
            return node
        if callable(node) and not isinstance(node, Mapping) and not dataclasses.is_dataclass(node):
            return cls(key, node, {})
        values = dataclasses.asdict(node) if dataclasses.is_dataclass(node) else dict(node or {})
        if TARGET not in values or values[TARGET] in (None, "", "???"):
            raise ConfigError(f"{key}._target_: must name the component to build (an import path such as "
                              f"my_project.nets.Net), got {values.get(TARGET)!r}")
        target = values.pop(TARGET)
        skip = set(own_keys) | {"name"}
        return cls(key, target, {k: v for k, v in values.items() if k not in skip})

    @property
    def label(self) -> str:
        if isinstance(self.target, str):
            return self.target
        return f"{getattr(self.target, '__module__', '?')}.{getattr(self.target, '__qualname__', repr(self.target))}"

    def resolve(self) -> Callable:
        return self.target if not isinstance(self.target, str) else import_object(self.key, self.target)

    def check(self, positional: int = 0, context: Iterable[str] = ()) -> Callable:
        """Import the target and bind the configured arguments to its signature (driver side)."""
        obj = self.resolve()
        if not callable(obj):
            raise ConfigError(f"{self.key}._target_: {self.label} is not callable")
        try:
            signature = inspect.signature(obj)
        except (TypeError, ValueError):
            return obj  # a builtin without a signature: nothing to check here
        offered = {name: None for name in context if accepts(signature, name) and name not in self.kwargs}
        try:
            signature.bind(*([None] * positional), **self.kwargs, **offered)
        except TypeError as err:
            raise ConfigError(f"{self.key}: {self.label}{signature}: {err} "
                              f"(configured: {sorted(self.kwargs)})") from None
        return obj

    def build(self, *args: Any, **context: Any) -> Any:
        """Call the target (worker side) with the configured arguments plus the context it accepts."""
        obj = self.resolve()
        try:
            signature = inspect.signature(obj)
        except (TypeError, ValueError):
            signature = None
        offered = {name: value for name, value in context.items()
                   if name not in self.kwargs and signature is not None and accepts(signature, name)}
        return obj(*args, **offered, **self.kwargs)


def accepts(signature: inspect.Signature, name: str) -> bool:
    """Named explicitly (a **kwargs catch-all does not count: we pass context only where asked for)."""
    param = signature.parameters.get(name)
    return param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)


def import_object(key: str, path: str) -> Any:
    """``package.module.Name`` (or ``package.module:Name``) -> the object, or a ConfigError naming ``key``."""
    module_path, sep, attr = path.partition(":")
    if not sep:
        module_path, _, attr = path.rpartition(".")
    if not module_path or not attr:
        raise ConfigError(f"{key}._target_: {path!r} is not an import path (package.module.Name)")
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as err:
        raise ConfigError(f"{key}._target_: cannot import {path!r}: {err} (is the package installed or on "
                          f"PYTHONPATH? with cluster.address, see cluster.working_dir / cluster.py_modules)") from None
    except Exception as err:  # noqa: BLE001 - the user's module failed while importing: say which
        raise ConfigError(f"{key}._target_: importing {module_path!r} failed: {type(err).__name__}: {err}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{key}._target_: {module_path!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def optional_spec(key: str, node: Any, own_keys: Iterable[str] = ()) -> Optional[Spec]:
    if node is None or (isinstance(node, Mapping) and not node.get(TARGET)) and not callable(node):
        return None
    return Spec.of(key, node, own_keys)
