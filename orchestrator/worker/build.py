"""Builds one rank's training components from the frozen config: data shard and loader, model
(DDP), loss, metrics, step, optimizer and schedule. Every component goes through the same
``_target_`` path (``components/``); this module only wires them together."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch.nn.parallel import DistributedDataParallel

from orchestrator import config as C
from orchestrator.components import losses, models, optimizers, registry, schedulers
from orchestrator.components.metrics import MetricSet
from orchestrator.components.steps import CustomStep, SupervisedStep
from orchestrator.config.run import DDPConfig
from orchestrator.data import loader as L
from orchestrator.data.bad_samples import BadSampleCounter
from orchestrator.data.checks import batch_size_problem
from orchestrator.data.module import DataModule, Splits, WorkerContext
from orchestrator.policy.plan import AttemptPlan
from orchestrator.checkpoint.state import Trainables
from orchestrator.worker import comm_hooks
from orchestrator.worker.step import StepSettings, Stepper


@dataclass
class Components:
    cfg: C.Config
    plan: AttemptPlan
    rank: int
    device: torch.device
    model: torch.nn.Module        # the DDP wrapper (or the module itself with one rank)
    module: torch.nn.Module       # the bare model: what checkpoints hold
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Optional[torch.amp.GradScaler]
    stepper: Stepper
    splits: Splits
    loader_settings: L.LoaderSettings
    train_source: Any             # loader.MapTrain or a sharded split's StreamTrain
    bad_samples: BadSampleCounter
    steps_per_epoch: int
    total_steps: int
    batch_step: Any               # SupervisedStep or CustomStep: what a batch contributes
    base_lr: float                # the optimizer's configured LR (elastic runs scale it)

    @property
    def trainables(self) -> Trainables:
        return Trainables(self.module, self.optimizer, self.scheduler, self.scaler)

    @property
    def has_accuracy(self) -> bool:
        return self.batch_step.has_accuracy

    def train_loader(self, epoch: int, samples_done: int = 0, batches_done: int = 0):
        """This epoch's batches, from the position a resumed run had reached."""
        return self.bad_samples.unwrap(self.train_source.loader(epoch, samples_done, batches_done))

    def eval_loader(self, dataset):
        return self.bad_samples.unwrap(L.eval_loader(dataset, self.rank, self.plan.world_size,
                                                     self.loader_settings, self.cfg.trainer.seed))


def autocast_dtype(precision: str) -> Optional[torch.dtype]:
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA


def build_step(cfg: C.Config, splits: Splits, device: torch.device):
    loss_fn = losses.build_loss(registry.spec(cfg, "loss"), splits.info.task)
    kind = losses.kind_of(loss_fn)
    step_spec = registry.spec(cfg, "step")
    metric_set = MetricSet.build(cfg.metrics, device)
    built = registry.as_callable(step_spec, loss_fn=loss_fn, loss_kind=kind, metric_set=metric_set)
    return built if isinstance(built, SupervisedStep) else CustomStep(built, step_spec.label), kind


def wrap_ddp(module: torch.nn.Module, device: torch.device, distributed: bool,
             settings: Optional[DDPConfig] = None, seed: int = 0) -> torch.nn.Module:
    """DDP with ``trainer.ddp``'s settings and communication hook (one rank: the module itself)."""
    if not distributed:
        return module
    settings = settings or DDPConfig()
    model = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                    bucket_cap_mb=settings.bucket_cap_mb,
                                    gradient_as_bucket_view=settings.gradient_as_bucket_view,
                                    static_graph=settings.static_graph,
                                    find_unused_parameters=settings.find_unused_parameters)
    hook = comm_hooks.hook_for(settings, seed)
    if hook is not None:
        model.register_comm_hook(*hook)
    return model


def schedule_length(cfg: C.Config, train_size: int, batches_per_epoch: int, plan: AttemptPlan) -> tuple:
    batch = C.batch_size(cfg)
    spe = batches_per_epoch // plan.accumulate
    if spe == 0:  # a user's dataset: its size is only known here (the built-ins are checked on the driver)
        raise C.ConfigError(batch_size_problem(train_size, plan.world_size, batch, plan.accumulate)
                            or f"data: {train_size} training samples give a rank no full optimizer step")
    total = spe * cfg.trainer.max_epochs
    if cfg.trainer.max_steps is not None:
        total = min(total, cfg.trainer.max_steps)
    return spe, total


def build(cfg: C.Config, data: DataModule, plan: AttemptPlan, rank: int, device: torch.device,
          wrap: bool = True) -> Components:
    """``wrap=False``: the bare module, wrapped in DDP later (a replacement joining a healed gang first
    loads its peer's weights: DDP's constructor would broadcast a fresh rank 0's over the survivors')."""
    splits = data.setup(WorkerContext(rank, plan.world_size, cfg.trainer.seed))
    batch_step, kind = build_step(cfg, splits, device)
    # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
    seed_everything(cfg.trainer.seed)
    module = models.build_model(registry.spec(cfg, "model"), cfg.model, splits.info.input_shape,
                                splits.info.num_outputs(kind)).to(device)
    model = wrap_ddp(module, device, plan.world_size > 1 and wrap, cfg.trainer.ddp, cfg.trainer.seed)
    # Distinct per-rank streams from here on (dropout, augmentation), still reproducible.
    seed_everything(cfg.trainer.seed + 1 + rank)

    optimizer = optimizers.build_optimizer(registry.spec(cfg, "optimizer"), module.parameters())
    base_lr = optimizers.base_lr(optimizer)
    loader_settings = L.LoaderSettings(cfg.data, device.type == "cuda")
    source = L.train_source(splits.train, rank, plan.world_size, loader_settings, cfg.trainer.seed)
    spe, total = schedule_length(cfg, len(splits.train), source.batches_per_epoch(), plan)
    scheduler = schedulers.build_scheduler(registry.spec(cfg, "scheduler"), optimizer, total, spe)
    schedulers.rebase_lr(scheduler, base_lr * plan.lr_scale)
    scaler = torch.amp.GradScaler(device.type) if cfg.trainer.precision == "fp16" else None
    settings = StepSettings(device, autocast_dtype(cfg.trainer.precision),
                            models.setting(cfg.optimizer, "clip_grad_norm", None),
                            models.setting(cfg.optimizer, "clip_grad_value", None))
    stepper = Stepper(model, Trainables(module, optimizer, scheduler, scaler), batch_step, settings)
    stepper.schedule_varies = getattr(scheduler, "varies", True)
    return Components(cfg=cfg, plan=plan, rank=rank, device=device, model=model, module=module,
                      optimizer=optimizer, scheduler=scheduler, scaler=scaler, stepper=stepper, splits=splits,
                      loader_settings=loader_settings, train_source=source,
                      bad_samples=BadSampleCounter(models.setting(cfg.data, "max_bad_samples", 0)),
                      steps_per_epoch=spe, total_steps=total, batch_step=batch_step, base_lr=base_lr)
