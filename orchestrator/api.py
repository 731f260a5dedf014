"""Launching runs from Python.

    import orchestrator
    result = orchestrator.run(["model=mlp", "scaling.num_workers=2"])
    result.metrics["val/accuracy"], result.run_dir

or with a config object: ``orchestrator.run(config=cfg)`` where ``cfg`` is an
``orchestrator.config.Config`` (e.g. from ``orchestrator.compose([...])``, then edited).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Union

from orchestrator import config as C
from orchestrator.composition import compose


def default_run_dir(root: Union[str, Path] = "outputs") -> Path:
    now = dt.datetime.now()
    return Path(root) / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S-%f")


def run(overrides: Sequence[str] = (), *, config: Optional[C.Config] = None,
        run_dir: Optional[Union[str, Path]] = None, show_progress: bool = True,
        on_metrics: Optional[Callable[[int, Dict[str, float]], None]] = None,
        config_dir: Optional[Union[str, Path]] = None, **components: Any):
    """Train and return a ``RunResult`` (status, metrics, run_dir, summary).

    ``components`` are Python objects that replace config sections: ``model`` (an ``nn.Module``
    class or factory), ``data`` (a function returning the datasets, or a DataModule class), ``loss``,
    ``optimizer``, ``scheduler``, ``step``. They are shipped to the workers with cloudpickle and
    built there; the section's own settings (``data.batch_size``, ``model.init``, ...) still apply.
    ``config_dir`` adds a folder of the user's own YAMLs to the search path (like ``--config-dir``).
    ``on_metrics(step, values)`` is called on the driver for every batch of reduced metrics as it
    arrives (e.g. to forward them elsewhere). Raises ``ConfigError`` for bad configuration (before
    anything starts) and ``RunFailed`` when the run fails beyond what fault tolerance recovers.
    """
    from orchestrator.components import registry

    cfg = config if config is not None else compose(overrides, config_dir=config_dir)
    if config is not None and overrides:
        raise ValueError("pass either overrides or config, not both")
    registry.user_objects(cfg, components)
    C.validate(cfg)  # a config object edited by hand is checked again
    registry.check(cfg)
    from orchestrator.driver.launcher import launch

    return launch(cfg, Path(run_dir) if run_dir else default_run_dir(), show_progress=show_progress,
                  observer=on_metrics)


def run_frozen(cfg: C.Config, run_dir: Path, command_start: Optional[float] = None,
               overrides: Sequence[str] = ()) -> int:
    """The command line's run (or search): prints errors instead of raising; returns the exit code."""
    from orchestrator.checkpoint.store import CorruptCheckpoint
    from orchestrator.driver.cluster import ClusterJoinError
    from orchestrator.driver.launcher import RunDirInUse, RunFailed, launch
    from orchestrator.driver.worker_group import PlacementTimeout, RendezvousTimeout, WorkerStartTimeout

    try:
        if cfg.search.kind != "none":
            from orchestrator.search.study_trials import run_search

            summary = run_search(cfg, list(overrides), run_dir)
            if summary["interrupted"]:
                return 130
            return 1 if summary["completed"] == 0 and summary["failed"] else 0
        result = launch(cfg, run_dir, command_start=command_start)
    except (C.ConfigError, FileNotFoundError, RunDirInUse) as err:  # e.g. a bad data file (found before Ray
        # starts), a data.batch_size a user's dataset cannot fill (found on the workers), a run dir in use
        if isinstance(err, FileNotFoundError) and err.errno is not None:
            raise  # the operating system's, not one of ours (they name their key): not a config error
        print(f"\nConfiguration error: {err}", file=sys.stderr)
        return 2
    except (RunFailed, PlacementTimeout, WorkerStartTimeout, RendezvousTimeout, CorruptCheckpoint,
            ClusterJoinError) as err:  # a start-up bound names the key to raise: no traceback needed
        print(f"\nRun failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C: everything was torn down, without a final checkpoint
        print("\nStopped at once.", file=sys.stderr)
        return 130
    return 130 if result.status == "interrupted" else 0


def run_search(overrides: Sequence[str], sweep_dir: Optional[Union[str, Path]] = None) -> Dict:
    """Run a search (``search=random|bayes|grid|kfold`` among the overrides) from Python; returns its
    summary (best trial, counts, cross-validation statistics)."""
    cfg = compose(overrides)
    from orchestrator.search import study_trials

    if cfg.search.kind == "none":
        raise C.ConfigError("search.kind: choose search=grid|random|bayes|kfold to search (got 'none')")
    return study_trials.run_search(cfg, list(overrides), Path(sweep_dir) if sweep_dir else default_run_dir())
