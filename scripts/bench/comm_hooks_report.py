"""comm_hooks.md and comm_hooks.png: samples/s per (peer, hook) and the loss, from the runs' rows (pure)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import List, Optional

HOOKS = ["none", "fp16", "powersgd"]
EARLY_STEP = 10
PEER_ROWS = {("torchrun", "none"): "torchrun", ("torchrun", "fp16"): "torchrun-fp16",
             ("torchrun", "powersgd"): "torchrun-powersgd", ("orchestrator", "none"): "orchestrator",
             ("orchestrator", "fp16"): "orchestrator-fp16", ("orchestrator", "powersgd"): "orchestrator-powersgd"}


def ok_rows(rows: List[dict], runner: str) -> List[dict]:
    return [r for r in rows if r["runner"] == runner and r["status"] == "ok"]


def final_loss(row: dict) -> Optional[float]:
    result = row.get("result") or {}
    return result.get("final_loss")


def loss_at(row: dict, step: int) -> Optional[float]:
    curve = (row.get("result") or {}).get("loss_curve") or []
    return next((loss for s, loss in curve if s == step), None)


def spread(values: List[float], spec: str) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = format(statistics.median(values), spec)
    return med if min(values) == max(values) else f"{med} ({format(min(values), spec)}-{format(max(values), spec)})"


def median_rate(rows: List[dict], runner: str) -> Optional[float]:
    rates = [r["samples_per_sec"] for r in ok_rows(rows, runner)]
    return statistics.median(rates) if rates else None


def markdown(rows: List[dict], header: str) -> str:
    lines = [header, "", f"| peer | comm_hook | samples/s | vs no hook | loss at step {EARLY_STEP} | final loss | reps ok |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for (peer, hook), runner in PEER_ROWS.items():
        done = ok_rows(rows, runner)
        base, rate = median_rate(rows, PEER_ROWS[(peer, "none")]), median_rate(rows, runner)
        ratio = f"{rate / base:.2f}" if rate and base else "-"
        lines.append(f"| {peer} | {hook} | {spread([r['samples_per_sec'] for r in done], ',.0f')} | {ratio} "
                     f"| {spread([loss_at(r, EARLY_STEP) for r in done], '.2g')} "
                     f"| {spread([final_loss(r) for r in done], '.1e')} | {len(done)}/{sum(r['runner'] == runner for r in rows)} |")
    lines += ["", f"- loss at step {EARLY_STEP}: where the curve still moves (this synthetic task is nearly solved "
              "by step 20, so the final loss is ~0 for every hook and tells little).",
              "- final loss: torchrun's is rank 0's loss on its last batch; the orchestrator's is train/loss "
              "(the mean across ranks over the last log interval). The two peers see the same data distribution "
              "but not the same batches in the same order, so compare hooks within a peer, not peers.",
              "- PowerSGD (rank 1) compresses from step 2; fp16 halves the bytes of every bucket.",
              "- Failed or skipped runs: " + ("; ".join(f"{r['runner']} rep {r['rep']}: {r['note']}" for r in rows
                                                        if r["status"] != "ok") or "none")]
    return "\n".join(lines) + "\n"


def chart(rows: List[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, curves) = plt.subplots(1, 2, figsize=(13, 5))
    colors = {"none": "tab:blue", "fp16": "tab:orange", "powersgd": "tab:red"}
    for i, peer in enumerate(("torchrun", "orchestrator")):
        for j, hook in enumerate(HOOKS):
            runner = PEER_ROWS[(peer, hook)]
            rates = [r["samples_per_sec"] for r in ok_rows(rows, runner)]
            if rates:
                x = i * (len(HOOKS) + 1) + j
                bars.bar(x, statistics.median(rates), color=colors[hook], label=hook if i == 0 else None)
                bars.plot([x] * len(rates), rates, "k.", ms=4)
            for r in ok_rows(rows, runner)[:1]:  # one rep's curve per row: the shape, not the noise
                curve = (r.get("result") or {}).get("loss_curve") or []
                if curve:
                    curves.plot(*zip(*curve), ("-" if peer == "orchestrator" else "--"), color=colors[hook],
                                label=f"{peer} {hook}", lw=1.2)
    bars.set_xticks([1, 5], ["torchrun", "orchestrator"])
    bars.set_ylabel("steady samples/s (dots: reps)")
    bars.set_title("throughput by comm_hook, wide_mlp, 2 workers", fontsize=10)
    bars.legend(fontsize=8)
    curves.set_yscale("log")
    curves.set_xlabel("step")
    curves.set_ylabel("training loss (rep 1)")
    curves.set_title("loss curves (solid: orchestrator train/loss, dashed: torchrun rank 0)", fontsize=10)
    curves.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
