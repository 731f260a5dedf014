"""A small CNN: a conv stem, then per stage a (strided) conv and a residual block; batch norm and dropout."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from models import register


def conv_bn_relu(c_in: int, c_out: int, stride: int, batch_norm: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not batch_norm),
        nn.BatchNorm2d(c_out) if batch_norm else nn.Identity(),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, batch_norm: bool):
        super().__init__()
        self.conv1 = conv_bn_relu(channels, channels, 1, batch_norm)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm)
        self.bn2 = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.bn2(self.conv2(self.conv1(x))))


@register("cnn")
class CNN(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_outputs: int, channels: Sequence[int] = (32, 64),
                 dropout: float = 0.25, batch_norm: bool = True):
        super().__init__()
        if len(input_shape) == 2:  # (H, W) grey images
            input_shape = (1, *input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"cnn needs (channels, height, width) inputs, got shape {tuple(input_shape)}")
        stages = []
        c_in = input_shape[0]
        for i, c_out in enumerate(channels):
            # The first stage keeps the resolution (digits are only 8x8); later ones halve it.
            stages.append(conv_bn_relu(c_in, c_out, 1 if i == 0 else 2, batch_norm))
            stages.append(ResidualBlock(c_out, batch_norm))
            c_in = c_out
        self.input_shape = tuple(input_shape)
        self.features = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(c_in, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.input_shape)
        return self.head(self.features(x))
