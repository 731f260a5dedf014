"""Builds one rank's training components from the frozen config: model (DDP), optimizer,
schedule, data shard and the step function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch.nn.parallel import DistributedDataParallel

import models
from orchestrator import batches, config as C
from orchestrator.data import DataBundle
from orchestrator.optim import build_optimizer, build_scheduler, rebase_lr
from orchestrator.plan import AttemptPlan
from orchestrator.step import Stepper
from orchestrator.weight_init import initialise


@dataclass
class Components:
    cfg: C.Config
    plan: AttemptPlan
    rank: int
    device: torch.device
    model: torch.nn.Module        # the DDP wrapper (or the module itself with one rank)
    module: torch.nn.Module       # the bare model: what checkpoints hold
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: Optional[torch.amp.GradScaler]
    stepper: Stepper
    train: batches.SplitView
    val: Optional[batches.SplitView]
    test: Optional[batches.SplitView]
    sampler: batches.ResumableDistributedSampler
    steps_per_epoch: int
    total_steps: int
    loss_kind: str
    config_yaml: str


def autocast_dtype(precision: str) -> Optional[torch.dtype]:
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA


def build_model(cfg: C.Config, bundle: DataBundle) -> torch.nn.Module:
    hyper = {k: v for k, v in vars(cfg.model).items() if k not in ("name", "init")}
    model = models.build(cfg.model.name, bundle.spec.input_shape, bundle.spec.num_outputs, **hyper)
    initialise(model, cfg.model.init)
    return model


def build(cfg: C.Config, bundle: DataBundle, plan: AttemptPlan, rank: int, device: torch.device,
          distributed: bool, config_yaml: str = "") -> Components:
    # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
    seed_everything(cfg.trainer.seed)
    module = build_model(cfg, bundle).to(device)
    if distributed:
        model = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        model = module
    # Distinct per-rank streams from here on (dropout, augmentation), still reproducible.
    seed_everything(cfg.trainer.seed + 1 + rank)

    optimizer = build_optimizer(cfg.optimizer, module.parameters())
    train = batches.SplitView(bundle, "train")
    spe = batches.steps_per_epoch(len(train), plan.world_size, cfg.data.batch_size, plan.accumulate)
    if spe == 0:
        raise ValueError(f"data.batch_size={cfg.data.batch_size}: {len(train)} training samples cannot give "
                         f"one step of {plan.accumulate} batch(es) on each of {plan.world_size} workers")
    total = spe * cfg.trainer.max_epochs
    if cfg.trainer.max_steps is not None:
        total = min(total, cfg.trainer.max_steps)
    scheduler = build_scheduler(cfg.scheduler, optimizer, total, spe)
    rebase_lr(scheduler, cfg.optimizer.lr * plan.lr_scale)
    scaler = torch.amp.GradScaler(device.type) if cfg.trainer.precision == "fp16" else None
    loss_kind = C.resolved_loss(cfg)
    stepper = Stepper(model, optimizer, scheduler, loss_kind, device, autocast_dtype(cfg.trainer.precision),
                      scaler, cfg.optimizer.clip_grad_norm, cfg.optimizer.clip_grad_value)
    stepper.schedule_varies = not (cfg.scheduler.name == "constant" and cfg.scheduler.warmup_steps == 0)
    sampler = batches.ResumableDistributedSampler(len(train), plan.world_size, rank, shuffle=True,
                                                  seed=cfg.trainer.seed)
    return Components(
        cfg=cfg, plan=plan, rank=rank, device=device, model=model, module=module, optimizer=optimizer,
        scheduler=scheduler, scaler=scaler, stepper=stepper, train=train,
        val=batches.SplitView(bundle, "val") if bundle.num_samples("val") else None,
        test=batches.SplitView(bundle, "test") if bundle.num_samples("test") else None,
        sampler=sampler, steps_per_epoch=spe, total_steps=total, loss_kind=loss_kind, config_yaml=config_yaml)
