"""Numeric features plus an embedding of the neighbourhood, through a small MLP."""

from __future__ import annotations

import torch
import torch.nn as nn


class PriceModel(nn.Module):
    def __init__(self, num_neighbourhoods: int = 12, embedding_dim: int = 4, hidden: int = 32):
        super().__init__()
        self.embedding = nn.Embedding(num_neighbourhoods, embedding_dim)
        self.mlp = nn.Sequential(nn.Linear(4 + embedding_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, numeric: torch.Tensor, neighbourhood: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([numeric, self.embedding(neighbourhood)], dim=1)).squeeze(1)
