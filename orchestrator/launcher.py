"""The driver: start or join Ray, run the worker gang, apply the failure policy, tear down.

    launch(cfg, run_dir) -> RunResult

One attempt = one gang started from the latest checkpoint. Failures go to
the pure policy in ``failure.py``; this module only carries its decisions
out. Teardown (actors, placement group, writer, Ray) happens in one place.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from ray.exceptions import RayActorError, RayTaskError

from orchestrator import config as C
from orchestrator.components import registry
from orchestrator.data.module import data_module
from orchestrator.checkpoint import CheckpointStore, resolve_resume
from orchestrator.cluster import RaySession
from orchestrator.failure import Action, Failure, Kind, decide
from orchestrator.plan import AttemptPlan, elastic_sizes, plan_attempt
from orchestrator.progress import ProgressView
from orchestrator.recorder import MetricsObserver, Recorder
from orchestrator.signals import interrupts_call
from orchestrator.supervisor import Outcome, StopSignal, Supervisor
from orchestrator.tensorboard_sink import TensorBoardSink, flatten
from orchestrator.worker_group import PlacementTimeout, RendezvousTimeout, WorkerStartTimeout


IMPORT_LOCK = threading.Lock()
# Starting a replacement gang can fail like this; it counts as a failure (trainer.max_failures).
RESTART_ERRORS = (PlacementTimeout, WorkerStartTimeout, RendezvousTimeout, RayActorError, RayTaskError)


class RunDirInUse(RuntimeError):
    """The run dir already holds another run's checkpoints."""


class RunFailed(RuntimeError):
    def __init__(self, message: str, summary: Dict[str, Any]):
        super().__init__(message)
        self.summary = summary


@dataclass
class RunResult:
    status: str                 # completed | interrupted
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


def launch(cfg: C.Config, run_dir: Path, *, stop: Optional[StopSignal] = None,
           observer: Optional[MetricsObserver] = None, show_progress: bool = True,
           command_start: Optional[float] = None, hparams_experiment: bool = True) -> RunResult:
    from orchestrator.config.store import to_yaml

    started = command_start or time.time()
    paths = RunPaths(Path(run_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    config_yaml = to_yaml(cfg)
    paths.config.write_text(config_yaml)
    stop = stop or StopSignal()
    view = ProgressView(cfg.name, enabled=show_progress)
    early_warnings: List[str] = []  # shown and recorded once the recorder exists
    store = CheckpointStore(paths.checkpoints, cfg.checkpoint, warn=early_warnings.append)
    resume = resolve_resume(cfg.trainer.resume, store)  # before any actor starts: a bad path fails here
    if cfg.trainer.resume is None and store.manifests():
        # A fresh run would mix its checkpoints with the earlier run's (and restart from them).
        raise RunDirInUse(f"{paths.root} holds checkpoints of an earlier run: continue it with "
                          "trainer.resume=auto, or start a new run in another run dir")
    data = data_module(registry.spec(cfg, "data"), cfg.trainer.seed)
    data.check()  # a missing data file fails here, before Ray starts
    recorder, status, error = None, "failed", None
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
    # Importing torch and loading the data overlap with Ray's start (which mostly waits on its
    # processes), instead of adding to the time before the first step.
    preparing = background.submit(prepare, data, paths, tensorboard_restart_step(paths, resume))
    try:
        # Our handler goes in after Ray starts: ray.init installs its own SIGTERM handler.
        with RaySession(cfg.cluster) as session, interrupt_handler(stop, view):
            data_seconds, tb = preparing.result()
            recorder = Recorder(tb, view, observer=observer)
            recorder.log.timing.update({"command_start_unix": started, "data_load_s": data_seconds,
                                        "ray_start_s": session.seconds})
            store.warn = lambda m: recorder.event(0, "checkpoint", m)
            for message in early_warnings:
                recorder.event(resume[0].step if resume else 0, "checkpoint", message)
            if resume:
                recorder.event(resume[0].step, "resume",
                               f"continuing from checkpoint at step {resume[0].step}", style="cyan")
            tb.config(config_yaml)
            view.message(f"Run dir: {paths.root}   TensorBoard: tensorboard --logdir {paths.tensorboard}",
                         style="bold")
            view.start()
            status = run_attempts(cfg, data, recorder, store, stop, view, resume, config_yaml)
    except KeyboardInterrupt as err:  # a second Ctrl-C: stopped at once
        error, status = err, "interrupted"
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
        if status != "failed" and error is None:
            view.summary(summary)
    return RunResult(status=status, metrics=summary["metrics"], run_dir=paths.root, summary=summary)


def tensorboard_restart_step(paths: RunPaths, resume) -> Optional[int]:
    """Where the event log continues: after the resumed checkpoint; from scratch (hiding what an
    earlier attempt without checkpoints wrote) when starting fresh over old event files."""
    if resume:
        return resume[0].step
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
        import orchestrator.worker  # noqa: F401

    t0 = time.perf_counter()
    data.prepare()
    seconds = time.perf_counter() - t0
    return seconds, TensorBoardSink(paths.tensorboard, resume_step=resume_step)


def run_attempts(cfg: C.Config, data, recorder: Recorder, store: CheckpointStore, stop: StopSignal,
                 view: ProgressView, resume, config_yaml: str) -> str:
    import ray

    t0 = time.perf_counter()
    shared = data.to_workers()  # once; in-memory data goes to the object store, workers map it
    recorder.log.timing["data_share_s"] = time.perf_counter() - t0
    sink = start_run_sink(store)
    try:
        return supervise_attempts(cfg, shared, sink, recorder, store, stop, view, resume, config_yaml)
    finally:
        ray.kill(sink)


def start_run_sink(store: CheckpointStore):
    """The run's sink, pinned to this (the driver's) node: it writes the run dir's checkpoints."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from orchestrator.run_sink import RunSink

    here = ray.get_runtime_context().get_node_id()
    return ray.remote(RunSink).options(
        # One call at a time: calls from rank 0 then run in the order it sent them.
        num_cpus=0, max_concurrency=1, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
    ).remote(str(store.directory), store.cfg)


def supervise_attempts(cfg: C.Config, shared_data, sink, recorder: Recorder, store: CheckpointStore,
                       stop: StopSignal, view: ProgressView, resume, config_yaml: str) -> str:
    import ray

    resume_ref = ray.put(resume[1]) if resume else None
    history: List[Failure] = []
    attempt = 0
    while True:
        if stop.requested:  # asked to stop while (re)starting: nothing to resume here
            recorder.log.info["stop_reason"] = stop.reason
            return "interrupted"
        try:
            group, plan = start_gang(cfg, attempt, recorder)
        except RESTART_ERRORS as err:
            if attempt == 0:
                raise  # the first start fails with what went wrong, e.g. what the cluster cannot hold
            outcome = Outcome("failed", failure=Failure(Kind.START, None, history[-1].step, message=str(err),
                                                        error_type=type(err).__name__, detected_at=time.time()))
        else:
            outcome = run_gang(cfg, group, plan, attempt, shared_data, sink, recorder, stop, view, resume_ref,
                               config_yaml)
        if outcome.status == "finished":
            result = outcome.result
            recorder.log.info["stop_reason"] = result["stop_reason"]
            recorder.log.timing.update(result.get("timing", {}))
            if result["stop_reason"].startswith("non-finite loss"):  # health.nan_policy=stop
                raise RunFailed(f"{result['stop_reason']} (health.nan_policy=stop); the last checkpoint "
                                "holds the weights before it", {})
            # Workers that stopped because they were asked to (Ctrl-C, pruning) did not complete.
            return "interrupted" if result["stopped_on_request"] else "completed"
        if outcome.status == "interrupted" or stop.requested:
            recorder.log.info["stop_reason"] = stop.reason or "interrupted"
            return "interrupted"
        failure = outcome.failure
        decision = decide(failure, history, cfg.trainer.max_failures)
        history.append(failure)
        # The newest checkpoint of this run, else the one this run was resumed from.
        latest = store.latest_good() or resume
        report_failure(recorder, failure, decision, latest[0].step if latest else None, attempt)
        if decision.action == Action.RAISE:
            where = f"rank {failure.rank}" if failure.rank is not None else "the gang"
            raise RunFailed(f"{failure.describe()}\n{decision.reason}"
                            + (f"\nTraceback from {where}:\n{failure.traceback}" if failure.traceback else ""), {})
        resume_ref = ray.put(latest[1]) if latest else None
        attempt += 1


def run_gang(cfg: C.Config, group, plan: AttemptPlan, attempt: int, shared_data, sink, recorder: Recorder,
             stop: StopSignal, view: ProgressView, resume_ref, config_yaml: str) -> Outcome:
    """One attempt: train on this gang until it finishes, fails or is stopped; always release it."""
    recorder.log.info["workers"] = [
        {"rank": rank, "node_id": info.node_id, "node_ip": info.node_ip, "pid": info.pid, "gpus": info.gpu_ids}
        for rank, info in enumerate(group.infos)]
    recorder.log.info["world_size"] = group.size
    if attempt == 0:
        recorder.log.timing.update(group.timings)
        recorder.tb.scalars(0, {f"startup/{key}": value for key, value in recorder.log.timing.items()
                                if key.endswith("_s")}, replayable=False)
    supervisor = Supervisor(group, sink, recorder.handle, stop, cfg.fault_tolerance.hang_timeout_s,
                            cfg.fault_tolerance.graceful_stop_s, warn=lambda m: view.message(m, style="yellow"))
    try:
        outcome = supervisor.watch(group.run(cfg, shared_data, plan, resume_ref, config_yaml, sink))
    finally:
        group.shutdown()
    supervisor.drain_sink()  # everything rank 0 sent: curves, events and checkpoints up to the end
    return outcome


def start_gang(cfg: C.Config, attempt: int, recorder: Recorder):
    """First start: the full gang within cluster.placement_timeout_s. After a failure: wait up to
    fault_tolerance.restart_wait_s for the full gang, then (elastic, trainer.min_workers) the
    largest gang that fits, each within cluster.placement_timeout_s."""
    from orchestrator.worker_group import WorkerGroup

    timeout = cfg.fault_tolerance.collective_timeout_s
    if attempt == 0:
        size = cfg.trainer.num_workers
        return WorkerGroup.start(cfg, size, timeout), plan_attempt(cfg, attempt, size)
    last_error: Optional[Exception] = None
    for size in elastic_sizes(cfg):
        wait = max(cfg.fault_tolerance.restart_wait_s, 1.0) if size == cfg.trainer.num_workers \
            else cfg.cluster.placement_timeout_s
        cluster = dataclasses.replace(cfg.cluster, placement_timeout_s=wait)
        try:
            group = WorkerGroup.start(dataclasses.replace(cfg, cluster=cluster), size, timeout)
        except PlacementTimeout as err:
            last_error = err
            continue
        plan = plan_attempt(cfg, attempt, size)
        if size < cfg.trainer.num_workers:
            recorder.event(0, "elastic", f"continuing with {size} of {cfg.trainer.num_workers} workers "
                                         f"(accumulate {plan.accumulate}, lr x{plan.lr_scale:g})")
        return group, plan
    raise last_error


def report_failure(recorder: Recorder, failure: Failure, decision, resume_step: Optional[int], attempt: int) -> None:
    steps_lost = max(0, failure.step - (resume_step or 0))
    entry = {"attempt": attempt, "kind": failure.kind.value, "rank": failure.rank, "node": failure.node,
             "step": failure.step, "message": failure.message.strip()[:2000], "action": decision.action.value,
             "reason": decision.reason, "resume_step": resume_step, "steps_lost": steps_lost,
             "detected_unix": failure.detected_at}
    recorder.log.restarts.append(entry)
    recorder.tb.scalars(failure.step, {"fault/failures": float(len(recorder.log.restarts)),
                                       "fault/steps_lost": float(steps_lost)}, replayable=False)
    detail = f"\n{failure.traceback}" if failure.kind == Kind.HANG else ""
    recorder.event(failure.step, "failure", f"{failure.describe()}; {decision.action.value}: {decision.reason}"
                   + (f"; resuming from step {resume_step} ({steps_lost} steps lost)"
                      if decision.action == Action.RESTART else "") + detail, style="red")


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


def build_summary(cfg: C.Config, paths: RunPaths, recorder: Optional[Recorder], status: str, started: float,
                  failure_message: Optional[str]) -> Dict[str, Any]:
    log = recorder.log if recorder else None
    last = dict(log.last) if log else {}
    metrics = {k: v for k, v in last.items() if not k.startswith(("worker/", "startup/", "fault/"))}
    timing = dict(log.timing) if log else {}
    if log and log.first_step_unix_per_attempt:
        timing["first_step_unix"] = log.first_step_unix_per_attempt[0]
        timing["command_to_first_step_s"] = log.first_step_unix_per_attempt[0] - started
    store = CheckpointStore(paths.checkpoints, cfg.checkpoint, warn=lambda m: None)
    best = store.best()
    manifests = store.manifests()
    return {
        "name": cfg.name,
        "status": status,
        "stop_reason": (log.info.get("stop_reason") if log else None),
        "error": failure_message,
        "metrics": metrics,
        "steps": int(max(log.last_step.values(), default=0)) if log else 0,
        "epochs": int(last.get("train/epoch", 0)),
        "wall_time_s": time.time() - started,
        "world_size": log.info.get("world_size", cfg.trainer.num_workers) if log else cfg.trainer.num_workers,
        "workers": log.info.get("workers", []) if log else [],
        "timing": timing,
        "restarts": log.restarts if log else [],
        "events": log.events if log else [],
        "checkpoints": {"latest_step": manifests[-1].step if manifests else None,
                        "best_step": best.step if best else None,
                        "dir": str(paths.checkpoints)},
        "run_dir": str(paths.root),
        "tensorboard_dir": str(paths.tensorboard),
    }
