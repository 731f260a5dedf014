"""Model architectures, picked by name. Architecture only: no training code here.

Every model is built as ``cls(input_shape, num_outputs, **hyperparameters)``.
Register your own with ``@register("name")``.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence

import torch.nn as nn

_REGISTRY: Dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def wrap(cls):
        _REGISTRY[name] = cls
        return cls
    return wrap


def build(name: str, input_shape: Sequence[int], num_outputs: int, **hyperparameters) -> nn.Module:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name](tuple(input_shape), num_outputs, **hyperparameters)


def names():
    return sorted(_REGISTRY)


# Import for their @register side effect.
from models import cnn, gpt, mlp  # noqa: E402,F401
