"""The one TensorBoard writer of a run (driver side).

Curves appear while the job runs (flushed every few seconds). A restarted
attempt replays steps after its checkpoint; points already written are
dropped, and a resumed driver purges anything past its checkpoint
(``purge_step``), so every curve is continuous, with no duplicate or rewound
points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, Optional

FLUSH_SECS = 2
# Shown as the metric columns of TensorBoard's hparams view (those the run logged).
HPARAM_METRICS = ("val/loss", "val/accuracy", "test/loss", "test/accuracy", "train/loss")


class TensorBoardSink:
    def __init__(self, log_dir: Path, resume_step: Optional[int] = None):
        """resume_step: the step the run continues after (-1: from scratch over old event files)."""
        from torch.utils.tensorboard import SummaryWriter  # imports torch: kept off the start-up path

        purge = resume_step + 1 if resume_step is not None else None
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge, flush_secs=FLUSH_SECS)
        self.last_step: Dict[str, int] = {}
        self.floor = resume_step if resume_step is not None else -1

    def scalars(self, step: int, values: Dict[str, float], replayable: bool = True) -> None:
        """replayable: training curves, which a restarted attempt writes again from its checkpoint on
        (those repeats are dropped); False for one-off points (start-up, failures), always written."""
        for tag, value in values.items():
            if replayable and step <= max(self.last_step.get(tag, -1), self.floor):
                continue  # replayed after a restart: already written
            self.writer.add_scalar(tag, value, step)
            self.last_step[tag] = max(step, self.last_step.get(tag, -1))

    def histogram(self, tag: str, h: Dict[str, Any], step: int) -> None:
        """A histogram computed on a worker (counts and edges), written without the raw values."""
        if step <= self.floor:
            return
        self.writer.add_histogram_raw(tag, min=h["min"], max=h["max"], num=h["num"], sum=h["sum"],
                                      sum_squares=h["sum_squares"], bucket_limits=h["bucket_limits"],
                                      bucket_counts=h["bucket_counts"], global_step=step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)

    def config(self, yaml_text: str) -> None:
        # Markdown code block keeps the YAML's indentation in TensorBoard's text tab.
        self.writer.add_text("config", "```yaml\n" + yaml_text + "\n```", 0)

    def hparams(self, params: Dict[str, Any], metrics: Dict[str, float], write_experiment: bool = True) -> None:
        """Hyperparameters with final metrics for the hparams view. A search writes the experiment
        once at its root instead (``write_experiment=False`` in each trial)."""
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        shown = {k: v for k, v in metrics.items() if k in HPARAM_METRICS}
        exp, ssi, sei = hparams_summaries(params, shown or {"train/loss": 0.0})
        file_writer = self.writer._get_file_writer()
        if write_experiment:
            file_writer.add_summary(exp)
        file_writer.add_summary(ssi)
        file_writer.add_summary(sei)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested config -> {"model.name": "cnn", ...}; lists become strings (hparams take scalars only)."""
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif value is None:
            flat[name] = "null"
        else:
            flat[name] = str(list(value)) if isinstance(value, Iterable) else str(value)
    return flat
