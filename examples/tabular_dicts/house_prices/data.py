"""Synthetic house prices: numeric features, a categorical neighbourhood, and a price that depends on
both (plus noise). Samples are dicts, so batches are dicts of tensors."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class Houses(Dataset):
    def __init__(self, num_rows: int, num_neighbourhoods: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.numeric = torch.randn(num_rows, 4, generator=g)              # size, age, rooms, distance
        self.neighbourhood = torch.randint(0, num_neighbourhoods, (num_rows,), generator=g)
        premium = torch.linspace(-1.0, 1.0, num_neighbourhoods)
        weights = torch.tensor([1.5, -0.5, 0.8, -1.0])
        noise = 0.1 * torch.randn(num_rows, generator=g)
        self.price = self.numeric @ weights + premium[self.neighbourhood] + noise

    def __len__(self) -> int:
        return len(self.price)

    def __getitem__(self, i: int):
        return {"numeric": self.numeric[i], "neighbourhood": self.neighbourhood[i], "price": self.price[i]}


def house_splits(num_rows: int = 4000, num_neighbourhoods: int = 12, seed: int = 0):
    """The same tables on every worker (same seed): each rank then reads its own shard of them."""
    return {"train": Houses(num_rows, num_neighbourhoods, seed),
            "val": Houses(num_rows // 4, num_neighbourhoods, seed + 1)}
