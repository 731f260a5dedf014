"""A user model for the checkpoint sweep: its parameters plus Adam's two moments weigh about
``state_mb`` MiB (float32: 4 bytes per parameter, three copies). Named by import path, as a user's
model would be: ``model=custom model._target_=bench.state_size_model.StateOfSize +model.state_mb=100``.

An input layer, three square hidden layers and an output layer, whose width follows from the size, so every size costs a few dense
matmuls per step (the 1 GiB one about a second per step on one core).
"""

from __future__ import annotations

import math

import torch

SQUARE_LAYERS = 3
BYTES_PER_PARAM = 4 * 3  # float32 weight + Adam's exp_avg and exp_avg_sq


def width_for(state_mb: float, in_features: int, num_outputs: int) -> int:
    """Width w with SQUARE_LAYERS*(w*w + w) + (in + 1)*w + (w + 1)*out parameters ~= state_mb MiB of state."""
    params = state_mb * 2**20 / BYTES_PER_PARAM
    a, b = SQUARE_LAYERS, SQUARE_LAYERS + in_features + 1 + num_outputs
    return max(8, int((-b + math.sqrt(b * b + 4 * a * params)) / (2 * a)))


class StateOfSize(torch.nn.Module):
    def __init__(self, input_shape, num_outputs: int, state_mb: float = 10.0):
        super().__init__()
        in_features = math.prod(input_shape)
        width = width_for(state_mb, in_features, num_outputs)
        layers = [torch.nn.Flatten(), torch.nn.Linear(in_features, width), torch.nn.ReLU()]
        for _ in range(SQUARE_LAYERS):
            layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
        layers.append(torch.nn.Linear(width, num_outputs))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
