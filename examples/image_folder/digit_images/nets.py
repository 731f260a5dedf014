"""The user's model: architecture only. ``num_outputs`` is filled in by the orchestrator from the
data (it names the argument); ``channels`` comes from the config."""

from __future__ import annotations

import torch.nn as nn


class SmallConvNet(nn.Module):
    def __init__(self, num_outputs: int, channels: int = 16, dropout: float = 0.1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(8 * channels, num_outputs))

    def forward(self, x):
        return self.head(self.features(x))
