"""The classic multilayer perceptron (e.g. 784-128-64-10)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from models import register

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


@register("mlp")
class MLP(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_outputs: int, hidden_sizes: Sequence[int] = (128, 64),
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False):
        super().__init__()
        layers = [nn.Flatten()]
        width = math.prod(input_shape)
        for hidden in hidden_sizes:
            layers.append(nn.Linear(width, hidden))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
