"""The driver's entry: check the run dir, start or join Ray, hand the attempts to the controller, tear down.

    launch(cfg, run_dir) -> RunResult

The attempts (start a gang, watch it, recover or stop) are ``controller.Controller``'s;
this module prepares what they share and writes the summary. Teardown (actors,
placement group, writer, Ray) happens in one place.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from orchestrator import config as C
from orchestrator.components import registry
from orchestrator.components.models import setting
from orchestrator.data.checks import batch_size_problem
from orchestrator.data.module import CheckReport, DataModule, data_module
from orchestrator.checkpoint.store import CheckpointStore, resolve_resume
from orchestrator.driver.cluster import RaySession
from orchestrator.driver.controller import Controller, Resume, RunContext
from orchestrator.driver.gang_pool import GangPool
from orchestrator.driver.gang_runner import GangRunner
from orchestrator.policy.outcomes import RunFailed, RunStatus
from orchestrator.driver.progress import ProgressView
from orchestrator.driver.recorder import MetricsObserver, Recorder
from orchestrator.policy.input_bound import InputBoundMonitor
from orchestrator.driver.signals import interrupts_call
from orchestrator.driver.supervisor import StopSignal
from orchestrator.driver.tensorboard_sink import TensorBoardSink, flatten
from orchestrator.search.verdicts import VerdictChannel

__all__ = ["RunDirInUse", "RunFailed", "RunResult", "RunStatus", "launch"]

IMPORT_LOCK = threading.Lock()


class RunDirInUse(RuntimeError):
    """The run dir already holds another run's checkpoints."""


@dataclass
class RunResult:
    status: RunStatus           # completed | interrupted (equal to those strings)
    metrics: Dict[str, float]   # final value of every run-level scalar
    run_dir: Path
    summary: Dict[str, Any]


@dataclass
class RunPaths:
    root: Path

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def hang_reports(self) -> Path:
        return self.root / "hang_reports"


def checkpoint_dir(cfg: C.Config, paths: RunPaths) -> Union[Path, str]:
    """checkpoint.dir (storage every node sees, on a cluster: a path or an fsspec URL), else the run dir's
    checkpoints folder."""
    return cfg.checkpoint.dir if cfg.checkpoint.dir else paths.checkpoints


@dataclass
class RunSetup:
    """The run dir, checked before Ray starts."""
    paths: RunPaths
    config_yaml: str
    store: CheckpointStore
    resume: Optional[Resume]        # trainer.resume's checkpoint, if any
    early_warnings: List[Tuple[str, str]]  # (event kind, message): shown and recorded once the recorder exists
    data: DataModule                # the run's data, checked (files exist) before Ray starts


def open_run_dir(cfg: C.Config, run_dir: Path) -> RunSetup:
    """Write the config, find the checkpoint to resume from; a bad path or a run dir in use fails here."""
    from orchestrator.config.store import to_yaml

    paths = RunPaths(Path(run_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    config_yaml = to_yaml(cfg)
    paths.config.write_text(config_yaml)
    early_warnings: List[Tuple[str, str]] = []
    store = CheckpointStore(checkpoint_dir(cfg, paths), cfg.checkpoint,
                            warn=lambda message: early_warnings.append(("checkpoint", message)))
    resume = resolve_resume(cfg.trainer.resume, store)  # before any actor starts: a bad path fails here
    if cfg.trainer.resume is None and store.manifests():
        # A fresh run would mix its checkpoints with the earlier run's (and restart from them).
        raise RunDirInUse(f"{paths.root} holds checkpoints of an earlier run: continue it with "
                          "trainer.resume=auto, or start a new run in another run dir")
    data = data_module(registry.spec(cfg, "data"), cfg.trainer.seed)
    report = data.check() or CheckReport()  # a missing or corrupt data file fails here, before Ray starts
    early_warnings.extend(("data", message) for message in report.warnings)
    problem = batch_size_problem(report.sizes.get("train"), cfg.scaling.num_workers, C.batch_size(cfg),
                                 cfg.trainer.accumulate_grad_batches)
    if report.layout_problem:  # sharded data: can every rank's readers fill their batches?
        problem = problem or report.layout_problem(cfg.scaling.num_workers, setting(cfg.data, "num_workers", 0),
                                                  C.batch_size(cfg))
    if problem:  # known here for the built-in data; a user's dataset is checked on the workers
        raise C.ConfigError(problem)
    return RunSetup(paths, config_yaml, store, resume, early_warnings, data)


def launch(cfg: C.Config, run_dir: Path, *, stop: Optional[StopSignal] = None,
           observer: Optional[MetricsObserver] = None, show_progress: bool = True,
           command_start: Optional[float] = None, hparams_experiment: bool = True,
           gang_pool: Optional[GangPool] = None, verdicts: Optional[VerdictChannel] = None) -> RunResult:
    """``gang_pool``: a search's warm gangs (take one, hand it back); ``verdicts``: where a search
    trial's rank 0 asks for pruning verdicts. Both None for a single run."""
    started = command_start or time.time()
    setup = open_run_dir(cfg, run_dir)
    paths = setup.paths
    stop = stop or StopSignal()
    view = ProgressView(cfg.name, enabled=show_progress)
    recorder, status, error = None, RunStatus.FAILED, None
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
    # Importing torch and loading the data overlap with Ray's start (which mostly waits on its
    # processes), instead of adding to the time before the first step.
    preparing = background.submit(prepare, setup.data, paths, tensorboard_restart_step(paths, setup.resume))
    try:
        before_ray = time.time() - started  # interpreter, imports, composition, the run dir and data checks
        # Our handler goes in after Ray starts: ray.init installs its own SIGTERM handler.
        with RaySession(cfg.cluster) as session, interrupt_handler(stop, view):
            data_seconds, tb = preparing.result()
            recorder = Recorder(tb, view, observer=observer, input_bound=InputBoundMonitor.from_config(cfg))
            recorder.log.timing.update({"command_start_unix": started, "before_ray_s": before_ray,
                                        "data_load_s": data_seconds, "ray_start_s": session.seconds})
            begin_recording(recorder, setup)
            status = run_controller(cfg, recorder, setup, stop, gang_pool, verdicts)
    except KeyboardInterrupt as err:  # a second Ctrl-C: stopped at once
        error, status = err, RunStatus.INTERRUPTED
        raise
    except BaseException as err:
        error = err
        raise
    finally:
        view.stop()
        background.shutdown(wait=True)
        summary = build_summary(cfg, paths, recorder, status, started,
                                f"{type(error).__name__}: {error}" if error is not None else None)
        paths.summary.write_text(json.dumps(summary, indent=2, default=str))
        if isinstance(error, RunFailed):
            error.summary = summary
        close_writer(preparing, recorder, cfg, summary, hparams_experiment)
        if status is not RunStatus.FAILED and error is None:
            view.summary(summary)
    return RunResult(status=status, metrics=summary["metrics"], run_dir=paths.root, summary=summary)


def begin_recording(recorder: Recorder, setup: RunSetup) -> None:
    """What the run dir check found, the config, and where to look: once the recorder exists."""
    resume, tb, view = setup.resume, recorder.tb, recorder.view
    setup.store.warn = lambda m: recorder.event(0, "checkpoint", m)
    for kind, message in setup.early_warnings:
        recorder.event(resume.manifest.step if resume else 0, kind, message)
    if resume:
        recorder.event(resume.manifest.step, "resume", f"continuing from checkpoint at step {resume.manifest.step}",
                       style="cyan")
    tb.config(setup.config_yaml)
    view.message(f"Run dir: {setup.paths.root}   TensorBoard: tensorboard --logdir {setup.paths.tensorboard}",
                 style="bold")
    view.start()


def run_controller(cfg: C.Config, recorder: Recorder, setup: RunSetup, stop: StopSignal,
                   gang_pool: Optional[GangPool] = None, verdicts: Optional[VerdictChannel] = None) -> RunStatus:
    """The attempts of the run, driven by the controller on a gang runner that owns the Ray side."""
    runner = GangRunner(cfg, recorder, stop, setup.paths.hang_reports, pool=gang_pool, verdicts=verdicts)
    with runner.opened(setup.data, setup.store) as gangs:
        context = RunContext(cfg, recorder, setup.store, stop, resumed_from=setup.resume)
        return Controller(context, gangs).run()


def tensorboard_restart_step(paths: RunPaths, resume) -> Optional[int]:
    """Where the event log continues: after the resumed checkpoint; from scratch (hiding what an
    earlier attempt without checkpoints wrote) when starting fresh over old event files."""
    if resume:
        return resume.manifest.step
    if paths.tensorboard.is_dir() and any(paths.tensorboard.glob("events.out.tfevents.*")):
        return -1
    return None


def close_writer(preparing, recorder: Optional[Recorder], cfg: C.Config, summary: Dict[str, Any],
                 hparams_experiment: bool) -> None:
    """Hyperparameters with the final metrics, then close the event file (if it was ever opened)."""
    if not preparing.done() or preparing.exception() is not None:
        return
    tb = preparing.result()[1]
    if recorder is not None:
        tb.hparams(flatten(dataclasses.asdict(cfg)), summary["metrics"], write_experiment=hparams_experiment)
    tb.close()


def prepare(data, paths: RunPaths, resume_step: Optional[int]):
    """Driver work that does not need Ray: prepare the data (in-memory data loads here), open the
    TensorBoard writer, import the worker code (and torch with it) so actors can be created the
    moment Ray is up."""
    with IMPORT_LOCK:  # torch must not be imported by two threads at once (concurrent search trials)
        import orchestrator.worker.actor  # noqa: F401

    t0 = time.perf_counter()
    data.prepare()
    seconds = time.perf_counter() - t0
    return seconds, TensorBoardSink(paths.tensorboard, resume_step=resume_step)


def interrupt_handler(stop: StopSignal, view: ProgressView):
    """Ctrl-C / SIGTERM: stop at a step boundary with a final checkpoint; a second one: stop now
    (KeyboardInterrupt, wherever the driver is waiting; teardown still runs)."""
    def on_interrupt(name: str) -> None:
        if stop.requested:
            view.message(f"{name} again: stopping now", style="bold red")
            stop.request(f"interrupted ({name})")
            raise KeyboardInterrupt
        else:
            view.message(f"{name}: stopping at the next step boundary and writing a checkpoint "
                         "(again to stop at once)", style="bold yellow")
        stop.request(f"interrupted ({name})")
    return interrupts_call(on_interrupt)


def build_summary(cfg: C.Config, paths: RunPaths, recorder: Optional[Recorder], status: RunStatus, started: float,
                  failure_message: Optional[str]) -> Dict[str, Any]:
    log = recorder.log if recorder else None
    last = dict(log.last) if log else {}
    metrics = {k: v for k, v in last.items() if not k.startswith(("worker/", "workers/", "startup/", "fault/"))}
    timing = dict(log.timing) if log else {}
    if log and log.first_step_unix_per_attempt:
        timing["first_step_unix"] = log.first_step_unix_per_attempt[0]
        timing["command_to_first_step_s"] = log.first_step_unix_per_attempt[0] - started
    store = CheckpointStore(checkpoint_dir(cfg, paths), cfg.checkpoint, warn=lambda m: None)
    best = store.best()
    manifests = store.manifests()
    return {
        "name": cfg.name,
        "status": status.value,
        "stop_reason": (log.info.get("stop_reason") if log else None),
        "error": failure_message,
        "metrics": metrics,
        "steps": int(max(log.last_step.values(), default=0)) if log else 0,
        "epochs": int(last.get("train/epoch", 0)),
        "wall_time_s": time.time() - started,
        "world_size": log.info.get("world_size", cfg.scaling.num_workers) if log else cfg.scaling.num_workers,
        "workers": log.info.get("workers", []) if log else [],
        "spare_workers": log.info.get("spare_workers", 0) if log else 0,
        "gang": log.info.get("gang", {"warm": False}) if log else {"warm": False},  # taken warm from a search's pool?
        "timing": timing,
        "restarts": log.restarts if log else [],
        "driver_inbound": dataclasses.asdict(log.inbound) if log else {},
        "events": log.events if log else [],
        "checkpoints": {"latest_step": manifests[-1].step if manifests else None,
                        "best_step": best.step if best else None,
                        "dir": str(store.directory),
                        "transport": log.info.get("checkpoint_transport") if log else None},
        "run_dir": str(paths.root),
        "tensorboard_dir": str(paths.tensorboard),
    }
