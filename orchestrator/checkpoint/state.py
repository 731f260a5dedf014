"""Full training state: what a checkpoint holds, and how ranks capture and restore it.

A checkpoint is everything needed to continue bit-exactly: model, optimizer,
LR schedule, grad scaler, counters, the data position inside the epoch, and
every rank's RNG state. It holds only tensors, numbers, strings and
containers, so it loads with ``torch.load(weights_only=True)``: no arbitrary
objects are ever unpickled.
"""

from __future__ import annotations

import io
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist

FORMAT_VERSION = 1


@dataclass
class TrainState:
    step: int = 0              # optimizer steps completed
    epoch: int = 0             # epochs completed
    step_in_epoch: int = 0     # optimizer steps completed inside the current epoch
    samples_in_epoch: int = 0  # global data position inside the current epoch
    # A sharded stream's layout and every reader's shard and offset (streaming/split.py); {} for map-style data.
    data_position: Dict[str, Any] = field(default_factory=dict)
    # Components that decide when to stop keep their state here (plain numbers).
    monitors: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    last_val: Dict[str, float] = field(default_factory=dict)


def rng_state() -> Dict[str, Any]:
    _, python_state, gauss_next = random.getstate()
    # gauss_next: random.gauss() draws pairs and caches the second; without it the stream diverges.
    state = {"torch": torch.get_rng_state(), "python": list(python_state), "python_gauss": gauss_next}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state.get("python_gauss")))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def gather_to_rank0(obj: Any) -> Optional[List[Any]]:
    """Collective: every rank's ``obj`` on rank 0 (None elsewhere)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    world = dist.get_world_size()
    out = [None] * world if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


@dataclass
class Trainables:
    """What a checkpoint saves and restores besides the counters: the bare model (not the DDP wrapper),
    the optimizer, the LR schedule and the gradient scaler (None without fp16)."""
    model: torch.nn.Module
    optimizer: Any
    scheduler: Any
    scaler: Any = None


def capture(objects: Trainables, state: TrainState, world_size: int,
            best_model: Optional[Dict[str, torch.Tensor]] = None) -> Optional[bytes]:
    """Collective over all ranks; returns the serialized checkpoint on rank 0, None elsewhere."""
    payload = capture_payload(objects, state, world_size, best_model)
    return serialize(payload) if payload is not None else None


def serialize(payload: Dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def capture_payload(objects: Trainables, state: TrainState, world_size: int,
                    best_model: Optional[Dict[str, torch.Tensor]] = None) -> Optional[Dict[str, Any]]:
    """Collective over all ranks; returns the checkpoint's contents on rank 0, None elsewhere. Its model
    and optimizer tensors are the live ones (``writer.host_copy`` snapshots them). The run's config is
    not in it: it is the run dir's config.yaml, written by the driver."""
    model, optimizer, scheduler, scaler = objects.model, objects.optimizer, objects.scheduler, objects.scaler
    rngs = gather_to_rank0(rng_state())
    if rngs is None:
        return None
    payload = {
        "format_version": FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "train_state": asdict(state),
        "rng": rngs,
        "world_size": world_size,
    }
    if best_model is not None:
        # The best weights so far (only kept when a test split will evaluate them), so a restarted
        # or resumed run still tests the best model, not whatever it ended with.
        payload["best_model"] = best_model
    return payload


def weights_finite(model: torch.nn.Module) -> bool:
    """A checkpoint with NaN/Inf weights is never written (it would poison every resume)."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


REQUIRED_KEYS = ("format_version", "model", "optimizer", "scheduler", "train_state", "rng", "world_size")


def check_loadable(path) -> None:
    """Raises ``UnloadableCheckpoint`` unless ``path`` (a local path, or a file open for reading on remote
    storage) loads as a checkpoint of this format. Cheap on a large local file: with ``mmap=True`` torch
    unpickles the structure and maps the tensors without reading them (their bytes are covered by the
    manifest's checksum)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=isinstance(path, (str, Path)))
    except Exception as err:  # noqa: BLE001 - unpickling, zip and storage errors all mean "cannot load"
        raise UnloadableCheckpoint(f"torch.load fails: {type(err).__name__}: {first_line(str(err))}") from None
    if not isinstance(payload, dict):
        raise UnloadableCheckpoint(f"holds a {type(payload).__name__}, not a checkpoint")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise UnloadableCheckpoint(f"lacks {', '.join(missing)}")
    if payload["format_version"] != FORMAT_VERSION:
        raise UnloadableCheckpoint(f"format version {payload['format_version']}, this version reads {FORMAT_VERSION}")


class UnloadableCheckpoint(ValueError):
    pass


def first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def load_payload(data: bytes) -> Dict[str, Any]:
    # On the CPU: RNG states must stay CPU tensors, and load_state_dict moves the model's and the
    # optimizer's tensors to their device anyway.
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load_trainables(payload: Dict[str, Any], objects: Trainables) -> None:
    """Model, optimizer, schedule and grad scaler from a payload (a checkpoint's, or a live peer's)."""
    objects.model.load_state_dict(payload["model"])
    objects.optimizer.load_state_dict(payload["optimizer"])
    objects.scheduler.load_state_dict(payload["scheduler"])
    if objects.scaler is not None and payload.get("scaler"):
        objects.scaler.load_state_dict(payload["scaler"])


def restore(payload: Dict[str, Any], objects: Trainables, rank: int, world_size: int, seed: int,
            attempt: int) -> TrainState:
    load_trainables(payload, objects)
    if payload["world_size"] == world_size:
        set_rng_state(payload["rng"][rank])
    else:
        # Elastic: the saved streams cannot map 1:1 onto a gang of another size; seed them afresh
        # (still reproducible: from the seed, the attempt and the rank).
        random.seed(seed + 1000 * (attempt + 1) + rank)
        torch.manual_seed(seed + 1000 * (attempt + 1) + rank)
    return TrainState(**payload["train_state"])
