"""Typed configuration of the run's sections, checked where they are defined.

Plain dataclasses (no Hydra or OmegaConf import) so that they can be pickled into Ray workers,
which never import Hydra. Hydra validates types and key names at composition time (see
``store.py``); the value checks live in each ``__post_init__`` and run when the composed config
is frozen, before any actor starts. Every message names the dotted key.

The component sections (model, data, loss, optimizer, scheduler, metrics, step) are typed by the
schema of the built-in they select (beside that component, in ``orchestrator/components`` and
``orchestrator/data``), or are a user's ``_target_`` node, checked in ``components/registry.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional

from orchestrator.config.errors import require, require_choice


# ----------------------------------------------------------------------------- trainer
PRECISIONS = {"fp32", "bf16", "fp16"}
# torch.distributed.algorithms.ddp_comm_hooks: what each bucket's all-reduce sends.
COMM_HOOKS = {"none", "fp16", "bf16", "powersgd"}


@dataclass
class DDPConfig:
    """DistributedDataParallel's own settings (ignored with one worker, which runs without DDP)."""
    # Gradient bucket size in MiB (null: torch's default, 25). Larger: fewer all-reduce calls, less
    # overlap of communication with the backward pass.
    bucket_cap_mb: Optional[float] = None
    # Gradients are views into the all-reduce buckets: saves one gradient-sized copy of memory.
    gradient_as_bucket_view: bool = False
    # The set of parameters used never changes between steps: DDP can skip its per-step bookkeeping.
    static_graph: bool = False
    # Some parameters get no gradient in some steps (costs a graph walk every step).
    find_unused_parameters: bool = False
    # none | fp16 | bf16 (GPU/NCCL only) | powersgd (low-rank compression with error feedback).
    comm_hook: str = "none"
    # PowerSGD: the rank of the low-rank approximation (1-4 is typical; higher sends more, loses less).
    powersgd_rank: int = 1
    # PowerSGD: plain all-reduce for this many synchronised steps first (torch suggests ~10% of training).
    powersgd_start_iter: int = 100

    def __post_init__(self):
        require(self.bucket_cap_mb is None or self.bucket_cap_mb > 0, "trainer.ddp.bucket_cap_mb",
                "must be > 0 or null", self.bucket_cap_mb)
        require_choice("trainer.ddp.comm_hook", self.comm_hook, COMM_HOOKS)
        require(self.powersgd_rank >= 1, "trainer.ddp.powersgd_rank", "must be >= 1", self.powersgd_rank)
        # torch's PowerSGDState refuses < 2 with error feedback: DDP rebuilds its buckets after step 1.
        require(self.powersgd_start_iter >= 2, "trainer.ddp.powersgd_start_iter", "must be >= 2",
                self.powersgd_start_iter)


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    # Stop after this many optimizer steps even if epochs remain (null: epochs decide).
    max_steps: Optional[int] = None
    seed: int = 0
    # Deprecated: use the loss group (loss=mse, or loss._target_=...). Kept working for one release.
    loss: Optional[str] = None
    # Reduce metrics across ranks and report them every N optimizer steps (a sync point).
    log_every_n_steps: int = 10
    # Gangs of up to this many ranks get TensorBoard tags per rank (worker/<rank>/step_ms, ...); larger
    # ones the distribution across ranks (workers/step_ms/{min,median,p90,max}) and the slowest ranks' ids.
    per_rank_metrics_up_to: int = 16
    # Extra worker actors kept started (torch imported) outside the process group: a dead rank's
    # replacement joins at once instead of starting a process (failure.recovery=peer).
    spare_workers: int = 0
    # Validate every N optimizer steps; null validates at the end of every epoch.
    val_every_n_steps: Optional[int] = None
    # Micro-batches per optimizer step; all-reduce only on the last one (DDP no_sync).
    accumulate_grad_batches: int = 1
    # "auto": CUDA when the worker has a GPU, else CPU.
    device: str = "auto"
    precision: str = "fp32"
    # null: start fresh; "auto": continue from this run dir's newest good checkpoint (fresh if none);
    # or a run dir / checkpoint file to continue from.
    resume: Optional[str] = None
    # Deprecated (one release): scaling.num_workers, scaling.min_workers, failure.max_failures.
    num_workers: Optional[int] = None
    min_workers: Optional[int] = None
    max_failures: Optional[int] = None
    ddp: DDPConfig = field(default_factory=DDPConfig)

    def __post_init__(self):
        require(self.max_epochs >= 1, "trainer.max_epochs", "must be >= 1", self.max_epochs)
        require(self.max_steps is None or self.max_steps >= 1, "trainer.max_steps",
                "must be >= 1 or null", self.max_steps)
        require(self.seed >= 0, "trainer.seed", "must be >= 0", self.seed)
        require(self.loss is None or self.loss in {"auto", "cross_entropy", "bce", "mse"}, "trainer.loss",
                "is deprecated; choose the loss group instead (loss=auto|cross_entropy|bce|mse or loss._target_=...)",
                self.loss)
        require(self.log_every_n_steps >= 1, "trainer.log_every_n_steps", "must be >= 1",
                self.log_every_n_steps)
        require(self.spare_workers >= 0, "trainer.spare_workers", "must be >= 0", self.spare_workers)
        require(self.per_rank_metrics_up_to >= 0, "trainer.per_rank_metrics_up_to",
                "must be >= 0 (0: always the distribution across ranks)", self.per_rank_metrics_up_to)
        require(self.val_every_n_steps is None or self.val_every_n_steps >= 1,
                "trainer.val_every_n_steps", "must be >= 1 or null", self.val_every_n_steps)
        require(self.accumulate_grad_batches >= 1, "trainer.accumulate_grad_batches", "must be >= 1",
                self.accumulate_grad_batches)
        require_choice("trainer.device", self.device, {"auto", "cpu", "cuda"})
        require_choice("trainer.precision", self.precision, PRECISIONS)
        require(self.resume is None or self.resume.strip() != "", "trainer.resume",
                "must be null, 'auto' or a path", self.resume)


# ----------------------------------------------------------------------------- stopping
@dataclass
class EarlyStoppingConfig:
    # Any validation metric, e.g. val/loss or val/accuracy; null turns early stopping off.
    monitor: Optional[str] = None
    mode: str = "min"
    # Validations without an improvement of at least min_delta before stopping.
    patience: int = 5
    min_delta: float = 0.0

    def __post_init__(self):
        require(self.monitor is None or self.monitor.startswith("val/"), "stopping.early.monitor",
                "must be a validation metric (val/...) or null", self.monitor)
        require_choice("stopping.early.mode", self.mode, {"min", "max"})
        require(self.patience >= 1, "stopping.early.patience", "must be >= 1", self.patience)
        require(self.min_delta >= 0, "stopping.early.min_delta", "must be >= 0", self.min_delta)


@dataclass
class OverfittingConfig:
    # Signal when validation loss rises while training loss falls, `patience` validations in a row.
    enabled: bool = True
    patience: int = 3
    stop: bool = False

    def __post_init__(self):
        require(self.patience >= 1, "stopping.overfitting.patience", "must be >= 1", self.patience)


@dataclass
class StoppingConfig:
    early: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    overfitting: OverfittingConfig = field(default_factory=OverfittingConfig)
    # At the end, evaluate the best model (by checkpoint.monitor) on the test split (data.test_fraction).
    test_best: bool = True


# ----------------------------------------------------------------------------- gradient health
@dataclass
class HealthConfig:
    # Per-layer gradient/weight norms and update-to-weight ratios every N steps (0: off).
    layer_stats_every_n_steps: int = 50
    # Weight and gradient histograms every N steps (0: off).
    histogram_every_n_steps: int = 0
    vanishing_below: float = 1e-7
    exploding_above: float = 1e3
    # Non-finite loss or gradients: "stop" the run, or "skip" the update and go on.
    # Either way the bad update is never applied, so no checkpoint is poisoned.
    nan_policy: str = "stop"
    # With nan_policy=skip: stop after this many non-finite steps in a row.
    max_consecutive_skips: int = 10
    # Warn once (terminal and TensorBoard) when a rank waits for its next batch for more than this
    # share of its step time (worker/<rank>/data_wait_pct), for input_bound_window_s on end (0: off).
    input_bound_pct: float = 10.0
    input_bound_window_s: float = 60.0

    def __post_init__(self):
        require(self.layer_stats_every_n_steps >= 0, "health.layer_stats_every_n_steps", "must be >= 0",
                self.layer_stats_every_n_steps)
        require(self.histogram_every_n_steps >= 0, "health.histogram_every_n_steps", "must be >= 0",
                self.histogram_every_n_steps)
        require(self.vanishing_below >= 0, "health.vanishing_below", "must be >= 0", self.vanishing_below)
        require(self.exploding_above > self.vanishing_below, "health.exploding_above",
                "must be > health.vanishing_below", self.exploding_above)
        require_choice("health.nan_policy", self.nan_policy, {"stop", "skip"})
        require(self.max_consecutive_skips >= 1, "health.max_consecutive_skips", "must be >= 1",
                self.max_consecutive_skips)
        require(0.0 <= self.input_bound_pct <= 100.0, "health.input_bound_pct", "must be in [0, 100] (0: off)",
                self.input_bound_pct)
        require(self.input_bound_window_s > 0, "health.input_bound_window_s", "must be > 0",
                self.input_bound_window_s)


# ----------------------------------------------------------------------------- checkpoints
@dataclass
class CheckpointConfig:
    # Save every N optimizer steps (null: never by step) and/or at every epoch end.
    every_n_steps: Optional[int] = None
    every_epoch: bool = True
    # Retention: the newest keep_last, plus the best keep_best by `monitor`.
    keep_last: int = 2
    keep_best: int = 1
    monitor: str = "val/loss"
    mode: str = "min"
    # Where checkpoints go (null: the run dir's checkpoints folder). A path every node sees (a shared
    # filesystem on a cluster) or an fsspec URL; rank 0 writes there itself and the driver commits them.
    dir: Optional[str] = None
    # How the checkpoint file reaches storage: direct (rank 0 writes it, only a manifest travels to the
    # driver) | driver (rank 0 sends the bytes; the driver writes them) | auto (direct when checkpoint.dir
    # is set or the driver can see rank 0's files, i.e. rank 0 runs on the driver's node; see transport.py).
    transport: str = "auto"
    # Snapshot the state to host memory at the step boundary and write it in a background thread while
    # training goes on (at most one write in flight).
    async_save: bool = True

    def __post_init__(self):
        require_choice("checkpoint.transport", self.transport, {"auto", "direct", "driver"})
        require(self.dir is None or bool(str(self.dir).strip()), "checkpoint.dir", "must be a path, a URL or null",
                self.dir)
        if self.dir is not None:
            from orchestrator.checkpoint.storage import check_location

            check_location(str(self.dir), "checkpoint.dir")  # an unknown scheme fails here, at composition
        require(self.every_n_steps is None or self.every_n_steps >= 1, "checkpoint.every_n_steps",
                "must be >= 1 or null", self.every_n_steps)
        require(self.keep_last >= 1, "checkpoint.keep_last", "must be >= 1", self.keep_last)
        require(self.keep_best >= 0, "checkpoint.keep_best", "must be >= 0", self.keep_best)
        require_choice("checkpoint.mode", self.mode, {"min", "max"})


# ----------------------------------------------------------------------------- cluster
@dataclass
class ClusterConfig:
    # null: start an embedded local Ray for this run; "auto" or "host:port": join that cluster.
    address: Optional[str] = None
    # Local Ray only: logical CPUs to offer (null: the machine's count).
    num_cpus: Optional[int] = None
    # Deprecated (one release): scaling.cpus_per_worker, .gpus_per_worker, .placement_strategy, .placement_timeout_s.
    cpus_per_worker: Optional[int] = None
    gpus_per_worker: Optional[int] = None
    placement_strategy: Optional[str] = None
    placement_timeout_s: Optional[float] = None
    include_dashboard: bool = False
    # Ship this project's code to the cluster's nodes (runtime_env py_modules) when joining a cluster.
    ship_code: bool = True
    # The network interface gloo binds to (null: the one that carries the node IP Ray reports;
    # GLOO_SOCKET_IFNAME set on a node wins over both).
    gloo_socket_ifname: Optional[str] = None
    # Your code on the cluster's nodes (Ray runtime_env, only when joining a cluster): a folder to
    # ship and run the workers in, your packages (folders), and pip requirements to install.
    working_dir: Optional[str] = None
    py_modules: List[str] = field(default_factory=list)
    pip: List[str] = field(default_factory=list)

    def __post_init__(self):
        require(self.address is None or self.address.strip() != "", "cluster.address",
                "must be null, 'auto' or host:port", self.address)
        require(self.num_cpus is None or self.num_cpus >= 1, "cluster.num_cpus", "must be >= 1 or null",
                self.num_cpus)
        require(self.gloo_socket_ifname is None or self.gloo_socket_ifname.strip() != "",
                "cluster.gloo_socket_ifname", "must be null or an interface name", self.gloo_socket_ifname)
        require(self.working_dir is None or os.path.isdir(self.working_dir), "cluster.working_dir",
                "must be null or an existing folder", self.working_dir)
        for module in self.py_modules:
            # Ray also takes remote URIs (s3://, https://...); only local paths can be checked here.
            require("://" in module or os.path.exists(module), "cluster.py_modules",
                    "entries must be existing folders (or remote URIs)", module)
        for requirement in self.pip:
            require(isinstance(requirement, str) and requirement.strip() != "", "cluster.pip",
                    "entries must be pip requirement strings", requirement)


# ----------------------------------------------------------------------------- chaos
@dataclass
class ChaosConfig:
    """Fault injection, for trying out fault tolerance (and for its tests).

    kind: none | raise (a Python exception) | exit (the process dies) | term (the process gets
    SIGTERM, as a spot instance's preemption notice) | stall (stops making progress) | nan (the loss
    becomes NaN). At optimizer step `at_step` on rank `rank` (-1: every rank).
    """
    kind: str = "none"
    rank: int = 0
    at_step: int = 1
    # A failure per attempt: attempt k fails at at_step + k * every_n_steps (null: at at_step).
    every_n_steps: Optional[int] = None
    # Only in the first attempt (so a restart succeeds); false repeats it every attempt.
    once: bool = True

    def __post_init__(self):
        require_choice("chaos.kind", self.kind, {"none", "raise", "exit", "term", "stall", "nan"})
        require(self.rank >= -1, "chaos.rank", "must be >= 0, or -1 (every rank)", self.rank)
        require(self.at_step >= 1, "chaos.at_step", "must be >= 1", self.at_step)
        require(self.every_n_steps is None or self.every_n_steps >= 1, "chaos.every_n_steps",
                "must be null or >= 1", self.every_n_steps)


