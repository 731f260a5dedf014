"""A whole config's components: checked on the driver before any actor starts, built on a worker.

Built-in sections (a schema dataclass with its own ``_target_``) were checked by their schema; a
user's section (a ``_target_`` node, a changed ``_target_``, or a Python object) is imported and its
signature bound here, so a typo or a missing argument is a ConfigError naming the key.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Dict

from orchestrator.components import metrics as M, models, optimizers, schedulers
from orchestrator.components.spec import Spec
from orchestrator.config.errors import ConfigError
from orchestrator.config.root import DEFAULT_STEP
from orchestrator.data import builtin
from orchestrator.data.ray_data_schema import GivenDataset, RayDataConfig, is_ray_dataset

OWN_KEYS = {"model": models.OWN_KEYS, "optimizer": optimizers.OWN_KEYS, "data": builtin.OWN_KEYS}
OWN_CHECKS = {"model": models.check_own_keys, "optimizer": optimizers.check_own_keys,
              "data": builtin.check_own_keys}
SECTIONS = ("model", "data", "loss", "optimizer", "scheduler", "step")
STEP_CONTEXT = ("loss_fn", "loss_kind", "metric_set")


def spec(cfg: Any, section: str) -> Spec:
    return Spec.of(section, getattr(cfg, section), OWN_KEYS.get(section, ()))


def is_builtin(node: Any) -> bool:
    """A schema dataclass that still builds its own target (checked by the schema itself), or the
    default step as composed (nothing to bind; importing it would import torch before Ray starts,
    ~1.2 s on the start-up path that the driver otherwise spends while Ray starts)."""
    if node == {"_target_": DEFAULT_STEP}:
        return True
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return False
    default = next((f.default for f in dataclasses.fields(node) if f.name == "_target_"), None)
    return getattr(node, "_target_", None) == default


def check(cfg: Any) -> None:
    """Import every user component and bind its configured arguments (driver side, no torch needed
    unless the user's own modules import it)."""
    for section in SECTIONS:
        node = getattr(cfg, section)
        if section in OWN_CHECKS and isinstance(node, dict):
            OWN_CHECKS[section](node)
        if not is_builtin(node) and not (section == "loss" and getattr(node, "_target_", None) == "auto"):
            CHECKS[section](spec(cfg, section))
    for name, metric in M.specs(cfg.metrics).items():
        metric.check()
    for name, node in (cfg.callbacks or {}).items():
        Spec.of(f"callbacks.{name}", node).check()
    if cfg.failure.policy:
        Spec.of("failure.policy", cfg.failure.policy).check(context=("max_failures",))


def check_callable_or_class(s: Spec, call_args: int, context=()) -> None:
    """A class is built from the configured arguments; a function is called with ``call_args``
    positional arguments after them being bound."""
    target = s.resolve()
    if inspect.isclass(target):
        s.check(context=context)
    else:
        s.check(positional=call_args, context=context)


def check_data(s: Spec) -> None:
    from orchestrator.data.module import DataModule

    target = s.resolve()
    if inspect.isclass(target) and issubclass(target, DataModule):
        s.check(context=("seed",))
    else:
        s.check(context=("rank", "world_size", "seed"))


CHECKS = {
    "model": lambda s: s.check(context=models.CONTEXT),
    "data": check_data,
    "loss": lambda s: check_callable_or_class(s, call_args=2),
    "optimizer": lambda s: s.check(positional=1),
    "scheduler": lambda s: s.check(positional=1, context=schedulers.CONTEXT),
    "step": lambda s: check_callable_or_class(s, call_args=2, context=STEP_CONTEXT),
}


def as_callable(s: Spec, **context: Any):
    """Build a class with its arguments (and the context it names); bind a function's arguments."""
    target = s.resolve()
    if inspect.isclass(target):
        return s.build(**context)
    return functools.partial(target, **s.kwargs) if s.kwargs else target


def user_objects(cfg: Any, objects: Dict[str, Any]) -> None:
    """``orchestrator.run(model=MyNet, data=make_datasets, ...)``: Python objects replace sections."""
    for section, obj in objects.items():
        if obj is None:
            continue
        if section not in SECTIONS:
            raise ConfigError(f"{section}: not a component section (one of {list(SECTIONS)})")
        current = getattr(cfg, section)
        own = {k: models.setting(current, k, None) for k in OWN_KEYS.get(section, ())}
        own = {k: v for k, v in own.items() if v is not None}
        if section == "data" and is_ray_dataset(obj):  # not a callable: it becomes data=ray_data's dataset
            base = current if isinstance(current, RayDataConfig) else RayDataConfig(**own)
            setattr(cfg, section, dataclasses.replace(base, dataset=GivenDataset(obj)))
            continue
        setattr(cfg, section, {"_target_": obj, **own})
