"""The terminal: a live progress bar (rich) while training, and a summary table at the end.

On a terminal the bar shows step, epoch, loss, throughput and ETA. Without
one (CI, ``ray job submit`` logs, pipes) it prints a plain line every few
seconds instead, so logs stay readable.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

PLAIN_EVERY_S = 10.0
# Metrics shown in the final table (summary.json has them all).
SUMMARY_PREFIXES = ("val/", "test/", "train/loss", "train/accuracy")


def make_console() -> Console:
    """A terminal keeps its width; logs and pipes get a wide one, so tables are not cut to 80 columns."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


class ProgressView:
    def __init__(self, name: str, console: Optional[Console] = None, enabled: bool = True):
        self.console = console or make_console()
        self.name = name
        self.enabled = enabled
        self.total: Optional[int] = None
        self.steps_per_epoch: Optional[int] = None
        self.fields = {"epoch": "-", "loss": "-", "throughput": "-"}
        self.step = 0
        self.live = enabled and self.console.is_terminal
        self.progress: Optional[Progress] = None
        self.task = None
        self.last_plain = 0.0

    def start(self) -> None:
        if not self.live:
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("step {task.completed}/{task.total}"), TextColumn("epoch {task.fields[epoch]}"),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[throughput]} samples/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=False, refresh_per_second=4)
        self.progress.start()
        self.task = self.progress.add_task(self.name, total=None, **self.fields)

    def plan(self, total_steps: int, steps_per_epoch: int, start_step: int) -> None:
        self.total, self.steps_per_epoch = total_steps, steps_per_epoch
        self.step = max(self.step, start_step)
        if self.progress is not None:
            self.progress.update(self.task, total=total_steps, completed=self.step)

    def metrics(self, step: int, values: Dict[str, float]) -> None:
        self.step = max(self.step, step)
        if "train/loss" in values:
            self.fields["loss"] = f"{values['train/loss']:.4f}"
        if "train/samples_per_sec" in values:
            self.fields["throughput"] = f"{values['train/samples_per_sec']:,.0f}"
        if self.steps_per_epoch:
            self.fields["epoch"] = f"{self.step / self.steps_per_epoch:.1f}"
        if self.progress is not None:
            self.progress.update(self.task, completed=self.step, **self.fields)
        elif self.enabled and time.time() - self.last_plain > PLAIN_EVERY_S:
            self.last_plain = time.time()
            total = f"/{self.total}" if self.total else ""
            self.console.print(f"{self.name}: step {self.step}{total} epoch {self.fields['epoch']} "
                               f"loss {self.fields['loss']} {self.fields['throughput']} samples/s",
                               highlight=False)

    def message(self, text: str, style: str = "") -> None:
        if self.enabled:
            self.console.print(text, style=style or None, highlight=False, soft_wrap=True, markup=False)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def summary(self, summary: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.console.print(f"{self.name}: {summary['status']} ({summary.get('stop_reason') or '-'})",
                           style="bold", highlight=False, soft_wrap=True)
        table = Table(show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for key, value in summary["metrics"].items():
            if not key.startswith(SUMMARY_PREFIXES):
                continue
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) and not value.is_integer() else
                          f"{value:g}")
        table.add_row("steps / epochs", f"{summary['steps']} / {summary['epochs']}")
        table.add_row("wall time", f"{summary['wall_time_s']:.1f}s")
        if summary["timing"].get("steady_samples_per_sec"):
            table.add_row("steady samples/s", f"{summary['timing']['steady_samples_per_sec']:,.0f}")
        if summary["restarts"]:
            table.add_row("restarts", str(len(summary["restarts"])))
        table.add_row("run dir", summary["run_dir"])
        self.console.print(table)
        self.console.print(f"TensorBoard: tensorboard --logdir {summary['tensorboard_dir']}", highlight=False,
                           soft_wrap=True)
