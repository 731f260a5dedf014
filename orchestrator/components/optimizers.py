"""The optimizer component: ``optimizer._target_`` is any ``torch.optim.Optimizer`` class (or
factory) taking the parameters first. Clipping is the orchestrator's own setting of the section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from orchestrator.config.errors import MISSING, require

OWN_KEYS = ("clip_grad_norm", "clip_grad_value")


@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    name: str = "optimizer"
    lr: float = 1e-3
    weight_decay: float = 0.0
    # Gradient clipping; None disables.
    clip_grad_norm: Optional[float] = None
    clip_grad_value: Optional[float] = None

    def __post_init__(self):
        require(self.lr > 0, "optimizer.lr", "must be > 0", self.lr)
        require(self.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0", self.weight_decay)
        check_own_keys(vars(self))


def check_own_keys(node: Any) -> None:
    for key in OWN_KEYS:
        value = node.get(key)
        require(value is None or (isinstance(value, (int, float)) and value > 0), f"optimizer.{key}",
                "must be > 0 or null", value)


@dataclass
class SGDConfig(OptimizerConfig):
    _target_: str = "torch.optim.SGD"
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False

    def __post_init__(self):
        super().__post_init__()
        require(0.0 <= self.momentum < 1.0, "optimizer.momentum", "must be in [0, 1)", self.momentum)
        require(not self.nesterov or self.momentum > 0, "optimizer.nesterov",
                "needs optimizer.momentum > 0", self.nesterov)


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adam"
    name: str = "adam"
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8

    def __post_init__(self):
        super().__post_init__()
        require(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
                "optimizer.betas", "must be two numbers in [0, 1)", self.betas)
        require(self.eps > 0, "optimizer.eps", "must be > 0", self.eps)


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "torch.optim.AdamW"
    name: str = "adamw"
    weight_decay: float = 0.01


@dataclass
class RMSPropConfig(OptimizerConfig):
    _target_: str = "torch.optim.RMSprop"
    name: str = "rmsprop"
    alpha: float = 0.99
    momentum: float = 0.0
    eps: float = 1e-8

    def __post_init__(self):
        super().__post_init__()
        require(0.0 < self.alpha < 1.0, "optimizer.alpha", "must be in (0, 1)", self.alpha)
        require(0.0 <= self.momentum < 1.0, "optimizer.momentum", "must be in [0, 1)", self.momentum)


SCHEMAS = [SGDConfig, AdamConfig, AdamWConfig, RMSPropConfig]


def build_optimizer(spec, params):
    """On a worker, from a Spec or the section itself. List-valued settings (betas) become tuples,
    as torch documents them."""
    import torch

    from orchestrator.components.spec import Spec

    spec = Spec.of("optimizer", spec, OWN_KEYS)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.kwargs.items()}
    optimizer = spec.resolve()(params, **kwargs)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer: {spec.label} returned {type(optimizer).__name__}, not a torch.optim.Optimizer")
    return optimizer


def base_lr(optimizer) -> float:
    return optimizer.param_groups[0]["lr"]
