"""Weight initialisation schemes chosen in config (model.init)."""

from __future__ import annotations

import torch.nn as nn


def initialise(model: nn.Module, scheme: str) -> None:
    if scheme == "default":
        return  # PyTorch's own per-layer defaults
    init_weight = {
        "xavier": nn.init.xavier_uniform_,
        "kaiming": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
        "orthogonal": nn.init.orthogonal_,
    }[scheme]
    for module in model.modules():
        # Only weight matrices and conv kernels: norms and embeddings keep their defaults.
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            init_weight(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
