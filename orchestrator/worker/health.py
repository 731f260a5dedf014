"""Gradient health: per-layer gradient and weight norms, update-to-weight ratios,
histograms, vanishing/exploding gradients, and where a non-finite value appeared.

Gradients are all-reduced before anyone looks at them, so every rank sees the
same values; only rank 0 computes the (optional, periodic) per-layer figures.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from orchestrator import config as C

HISTOGRAM_BINS = 30


def layer_name(parameter_name: str) -> str:
    return parameter_name.replace(".", "/")


def first_non_finite_gradient(model: torch.nn.Module) -> Tuple[Optional[str], int, int]:
    """(first parameter in forward order with a non-finite gradient, how many are, how many have grads)."""
    first, bad, total = None, 0, 0
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        total += 1
        if not bool(torch.isfinite(p.grad).all()):
            bad += 1
            first = first or name
    return first, bad, total


class LayerStats:
    """Per-layer statistics on steps chosen by ``health.layer_stats_every_n_steps``."""

    def __init__(self, model: torch.nn.Module, cfg: C.HealthConfig):
        self.model = model
        self.cfg = cfg
        self.before: Dict[str, torch.Tensor] = {}
        # (condition, layer) pairs currently flagged: warn when one starts, not at every check.
        self.flagged: set = set()

    def due(self, step: int) -> bool:
        every = self.cfg.layer_stats_every_n_steps
        return bool(every) and step % every == 0

    def histograms_due(self, step: int) -> bool:
        every = self.cfg.histogram_every_n_steps
        return bool(every) and step % every == 0

    def snapshot_weights(self) -> None:
        """Called before the optimizer step on a due step (update ratios need the old weights)."""
        self.before = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def collect(self) -> Tuple[Dict[str, float], List[str]]:
        """After the optimizer step: scalars per layer, and warnings for vanishing/exploding gradients."""
        scalars, warnings = {}, []
        for name, p in self.model.named_parameters():
            if p.grad is None:
                continue
            grad_norm = p.grad.detach().float().norm().item()
            weight_norm = p.detach().float().norm().item()
            tag = layer_name(name)
            scalars[f"grad_norm/{tag}"] = grad_norm
            scalars[f"weight_norm/{tag}"] = weight_norm
            if name in self.before:
                update = (p.detach() - self.before[name]).float().norm().item()
                scalars[f"update_ratio/{tag}"] = update / (weight_norm + 1e-12)
            condition = ("vanishing" if grad_norm < self.cfg.vanishing_below else
                         "exploding" if grad_norm > self.cfg.exploding_above else None)
            for kind in ("vanishing", "exploding"):
                if kind != condition:
                    self.flagged.discard((kind, name))
            if condition and (condition, name) not in self.flagged:
                self.flagged.add((condition, name))
                bound = (f"< health.vanishing_below={self.cfg.vanishing_below:g}" if condition == "vanishing"
                         else f"> health.exploding_above={self.cfg.exploding_above:g}")
                warnings.append(f"{condition} gradient in {name}: norm {grad_norm:.3g} {bound}")
        self.before = {}
        return scalars, warnings

    def histograms(self) -> Dict[str, Dict]:
        """Compact histograms (counts and bucket edges) of weights and gradients, for TensorBoard."""
        out = {}
        for name, p in self.model.named_parameters():
            out[f"weights/{layer_name(name)}"] = histogram(p.detach())
            if p.grad is not None:
                out[f"gradients/{layer_name(name)}"] = histogram(p.grad.detach())
        return out


def histogram(values: torch.Tensor) -> Dict:
    flat = values.float().flatten().cpu()
    finite = flat[torch.isfinite(flat)]
    low, high = (finite.min().item(), finite.max().item()) if finite.numel() else (0.0, 0.0)
    if high <= low:
        high = low + 1e-12
    counts = torch.histc(finite, bins=HISTOGRAM_BINS, min=low, max=high)
    edges = torch.linspace(low, high, HISTOGRAM_BINS + 1)[1:]
    return {"min": low, "max": high, "num": float(finite.numel()), "sum": finite.sum().item(),
            "sum_squares": (finite * finite).sum().item(), "bucket_limits": edges.tolist(),
            "bucket_counts": counts.tolist()}
