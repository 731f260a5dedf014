"""The end of a search: a ranked table (terminal and files), k-fold statistics, and the
experiment summary that lines all trials up in TensorBoard's hparams view."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional

from rich.console import Console
from rich.table import Table

from orchestrator import config as C
from orchestrator.search.ledger import TrialRecord
from orchestrator.search.space import override_value

STATUS_ORDER = {"completed": 0, "pruned": 1, "failed": 2, "interrupted": 3, "requeued": 4, "running": 5}


def ranked(trials: List[TrialRecord], direction: str) -> List[TrialRecord]:
    """Completed trials best first, then pruned (by the value they reached), then the rest."""
    sign = -1.0 if direction == "max" else 1.0

    def key(t: TrialRecord):
        has_value = t.value is not None
        return (STATUS_ORDER.get(t.status, 9), not has_value, sign * t.value if has_value else 0.0, t.number)
    return sorted(trials, key=key)


def cross_validation(trials: List[TrialRecord]) -> Optional[Dict[str, float]]:
    values = [t.value for t in trials if t.status == "completed" and t.value is not None]
    if not values:
        return None
    return {"folds": len(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}


def write(trials: List[TrialRecord], search: C.SearchConfig, sweep_dir: Path,
          console: Optional[Console] = None) -> Dict[str, Any]:
    order = ranked(trials, search.direction)
    keys = sorted({k for t in trials for k in t.params})
    write_csv(order, keys, search, sweep_dir / "trials.csv")
    summary: Dict[str, Any] = {"metric": search.metric, "direction": search.direction, "kind": search.kind,
                               "trials": len(trials),
                               "completed": sum(t.status == "completed" for t in trials),
                               "pruned": sum(t.status == "pruned" for t in trials),
                               "failed": sum(t.status == "failed" for t in trials)}
    best = next((t for t in order if t.status == "completed"), None)
    if best is not None:
        summary["best"] = {"number": best.number, "value": best.value, "params": best.params,
                           "run_dir": best.run_dir}
    if search.kind == "kfold":
        summary["cross_validation"] = cross_validation(trials)
    summary["warm_gangs"] = {"enabled": search.warm_gangs, "reused": sum(t.warm_gang for t in trials)}
    summary["trial_start_s"] = trial_start(trials)
    markdown = table_markdown(order, keys, search) + "\n" + summary_markdown(summary, search)
    (sweep_dir / "trials.md").write_text(markdown)
    (sweep_dir / "search.json").write_text(json.dumps(summary, indent=2, default=str))
    print_table(order, keys, search, summary, console or Console())
    return summary


def trial_start(trials: List[TrialRecord]) -> Optional[Dict[str, float]]:
    """Trial start times (previous trial's gang use ended -> this trial's first step): median and worst."""
    times = [t.start_s for t in trials if t.start_s is not None]
    if not times:
        return None
    return {"median": statistics.median(times), "worst": max(times), "trials": len(times)}


def write_csv(order: List[TrialRecord], keys: List[str], search: C.SearchConfig, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", "trial", "status", search.metric, *keys, "steps", "seconds", "run_dir"])
        for rank, t in enumerate(order, 1):
            writer.writerow([rank, t.number, t.status, t.value, *[override_value(t.params.get(k)) for k in keys],
                             t.steps, round((t.ended or t.started) - t.started, 1), t.run_dir])


def table_markdown(order: List[TrialRecord], keys: List[str], search: C.SearchConfig) -> str:
    header = ["rank", "trial", "status", search.metric, *keys, "steps", "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, t in enumerate(order, 1):
        cells = [rank, t.number, t.status, fmt(t.value), *[fmt_param(t.params.get(k)) for k in keys],
                 t.steps, f"{(t.ended or t.started) - t.started:.1f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def summary_markdown(summary: Dict[str, Any], search: C.SearchConfig) -> str:
    lines = [f"{summary['completed']} completed, {summary['pruned']} pruned, {summary['failed']} failed."]
    if "best" in summary:
        lines.append(f"Best: trial {summary['best']['number']}, {search.metric} = {fmt(summary['best']['value'])}.")
    start = summary.get("trial_start_s")
    if start:
        warm = summary.get("warm_gangs", {})
        lines.append(f"Trial start (one trial's gang released -> the next one's first step): median "
                     f"{start['median']:.2f}s, worst {start['worst']:.2f}s over {start['trials']} trials; "
                     f"warm gangs {'on' if warm.get('enabled') else 'off'}, {warm.get('reused', 0)} reused.")
    cv = summary.get("cross_validation")
    if cv:
        lines.append(f"{cv['folds']}-fold cross-validation: {search.metric} = {cv['mean']:.4f} +/- {cv['std']:.4f} "
                     "(mean +/- standard deviation).")
    return "\n".join(lines) + "\n"


def print_table(order: List[TrialRecord], keys: List[str], search: C.SearchConfig, summary: Dict[str, Any],
                console: Console) -> None:
    table = Table(title=f"Trials ranked by {search.metric} ({search.direction})", title_justify="left")
    for column in ["rank", "trial", "status", search.metric, *keys, "steps", "seconds"]:
        table.add_column(column)
    for rank, t in enumerate(order, 1):
        table.add_row(str(rank), str(t.number), t.status, fmt(t.value),
                      *[fmt_param(t.params.get(k)) for k in keys], str(t.steps),
                      f"{(t.ended or t.started) - t.started:.1f}")
    console.print(table)
    console.print(summary_markdown(summary, search).strip(), highlight=False, soft_wrap=True)


def fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


def fmt_param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else override_value(value)


def hparams_experiment(sweep_dir: Path, trials: List[TrialRecord], search: C.SearchConfig,
                       groups: List[str]) -> None:
    """One experiment summary at the sweep root: TensorBoard's hparams view then lines up every
    trial (each trial wrote its own session) with the searched keys as columns."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    if not trials:
        return
    example = trials[0].params  # typed like the trials' own session values (lists as text)
    names = {(f"{k}.name" if k in groups else k): (v if isinstance(v, (int, float, str, bool)) else str(v))
             for k, v in example.items()}
    metrics = {m: 0.0 for m in dict.fromkeys([search.metric, "val/loss", "val/accuracy", "test/accuracy"])}
    exp, _, _ = hparams(names, metrics)
    writer = SummaryWriter(log_dir=str(sweep_dir))
    writer._get_file_writer().add_summary(exp)
    writer.close()
