"""Worker side of the data: this rank's shard of any map-style dataset, in batches, resumable
mid-epoch, through a ``torch.utils.data.DataLoader``.

The batch samplers yield each batch's indices at once, so a dataset with a batched
``__getitems__`` (the in-memory ones) gathers a whole batch in one call; any other dataset is read
sample by sample and collated, in DataLoader worker processes if ``data.num_workers`` > 0.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional

import torch
from torch.utils.data.distributed import DistributedSampler



class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` (same shuffle, same ``set_epoch``) that can start part-way into an epoch.

    Positions are counted in the epoch's *global* order, which every rank
    derives from ``seed + epoch``. After ``b`` batches of ``B`` samples on each
    of ``W`` ranks, the first ``b * B * W`` positions have been used, whatever
    ``W`` was; so a resumed run neither repeats nor skips samples, even if it
    resumes with a different number of workers.
    """

    def __init__(self, num_samples: int, num_replicas: int, rank: int, shuffle: bool = True, seed: int = 0):
        # drop_last: every rank gets the same number of samples, hence the same number of steps.
        super().__init__(range(num_samples), num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=True)
        self.start = 0

    def set_start(self, consumed: int) -> None:
        """Skip the first ``consumed`` positions of the epoch's global order."""
        self.start = consumed

    def global_order(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            return torch.randperm(len(self.dataset), generator=g)
        return torch.arange(len(self.dataset))

    def __iter__(self) -> Iterator[int]:
        return iter(self.local_indices().tolist())

    def local_indices(self) -> torch.Tensor:
        remaining = self.global_order()[self.start:]
        usable = len(remaining) - len(remaining) % self.num_replicas
        return remaining[self.rank:usable:self.num_replicas]

    def __len__(self) -> int:
        return (len(self.dataset) - self.start) // self.num_replicas


class TrainBatches:
    """Index batches of this rank's shard (a DataLoader ``batch_sampler``); a last incomplete batch is
    dropped, so every rank takes the same number of steps. Resumes where the sampler was told to start."""

    def __init__(self, sampler: ResumableDistributedSampler, batch_size: int):
        self.sampler, self.batch_size = sampler, batch_size

    def __iter__(self) -> Iterator[list]:
        for indices in self.index_tensors():
            yield indices.tolist()

    def index_tensors(self) -> Iterator[torch.Tensor]:
        """The same batches as index tensors (slices of the epoch's shard, no copies)."""
        local = self.sampler.local_indices()
        for i in range(len(local) // self.batch_size):
            yield local[i * self.batch_size:(i + 1) * self.batch_size]

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size


class GatheredBatches:
    """The batches a DataLoader would give for a dataset that gathers a whole batch from tensors
    (``take(index_tensor)``: the in-memory ones), without the DataLoader: the shard's permutation is
    computed once per epoch and each batch is one ``index_select`` per array. No per-batch list of
    indices, fetcher or collate call: ~60 us less per step on a small model, the same batches."""

    def __init__(self, dataset: Any, batches: TrainBatches):
        self.dataset, self.batches = dataset, batches

    def __iter__(self) -> Iterator:
        take = self.dataset.take
        for indices in self.batches.index_tensors():
            yield take(indices)

    def __len__(self) -> int:
        return len(self.batches)


def gathers_directly(dataset: Any, settings: "LoaderSettings") -> bool:
    """Whether a training epoch can skip the DataLoader: the dataset gathers batches itself and nothing
    a DataLoader adds is asked for (worker processes, pinned memory, a collate function)."""
    return (callable(getattr(dataset, "take", None)) and settings.num_workers == 0 and not settings.pin_memory
            and settings.collate_fn is None)


class EvalBatches:
    """Every sample exactly once across ranks (strided shards, no padding), so reduced metrics are exact."""

    def __init__(self, num_samples: int, rank: int, world_size: int, batch_size: int):
        # max(): a rank past the last sample (fewer samples than ranks) gets an empty shard, not an error.
        self.local = torch.arange(rank, max(rank, num_samples), world_size)
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list]:
        for i in range(0, len(self.local), self.batch_size):
            yield self.local[i:i + self.batch_size].tolist()

    def __len__(self) -> int:
        return -(-len(self.local) // self.batch_size)


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """A training loader's generator seed: its worker processes' seeds follow (seed, rank, epoch)."""
    return hash((seed, rank, epoch)) % 2**62


class MapTrain:
    """This rank's training batches of a map-style dataset: a resumable sampler's shard. Positions are
    global (``samples_done``), so a resume continues exactly even with another world size."""

    def __init__(self, dataset: Any, rank: int, world_size: int, settings: "LoaderSettings", seed: int):
        self.dataset, self.rank, self.world_size, self.settings, self.seed = dataset, rank, world_size, settings, seed
        self.sampler = ResumableDistributedSampler(len(dataset), world_size, rank, shuffle=True, seed=seed)

    def batches_per_epoch(self) -> int:
        return (len(self.dataset) // self.world_size) // self.settings.batch_size

    def loader(self, epoch: int, samples_done: int, batches_done: int):
        """This epoch's loader; its worker processes' seeds follow (seed, rank, epoch), so a resumed
        run's augmentations match an uninterrupted one's."""
        self.sampler.set_epoch(epoch)
        self.sampler.set_start(samples_done)
        batches = TrainBatches(self.sampler, self.settings.batch_size)
        if gathers_directly(self.dataset, self.settings):
            return GatheredBatches(self.dataset, batches)
        return make_loader(self.dataset, batches, self.settings, epoch_seed(self.seed, self.rank, epoch))

    def resume_problem(self, recorded: Dict) -> Optional[str]:
        return None

    def position(self, epoch: int, batches_done: int) -> Dict:
        return {}


def make_loader(dataset: Any, batches: Any, settings: "LoaderSettings", seed: int):
    """``seed`` seeds the loader's own generator: creating an iterator draws its workers' base seed from
    it, not from the global RNG, which would shift dropout masks after a mid-epoch resume."""
    from torch.utils.data import DataLoader

    options = {}
    if settings.num_workers > 0:
        options["persistent_workers"] = settings.persistent_workers
        if settings.prefetch_factor is not None:
            options["prefetch_factor"] = settings.prefetch_factor
    collate = settings.collate_fn or getattr(dataset, "collate_fn", None)
    if getattr(dataset, "may_skip_samples", False):  # it returns BadSample markers (data.on_bad_sample=skip)
        from torch.utils.data import default_collate

        from orchestrator.data.bad_samples import collate_counted

        collate = collate_counted(collate or default_collate)
    return DataLoader(dataset, batch_sampler=batches, num_workers=settings.num_workers, collate_fn=collate,
                      pin_memory=settings.pin_memory, generator=torch.Generator().manual_seed(seed), **options)


class LoaderSettings:
    """The data section's DataLoader settings, resolved for this worker's device."""

    def __init__(self, node: Any, on_gpu: bool):
        from orchestrator.components.models import setting
        from orchestrator.components.spec import import_object

        self.batch_size: int = setting(node, "batch_size", 64)
        self.num_workers: int = setting(node, "num_workers", 0)
        pin = setting(node, "pin_memory", None)
        self.pin_memory: bool = on_gpu if pin is None else bool(pin) and on_gpu
        self.prefetch_factor: Optional[int] = setting(node, "prefetch_factor", None)
        self.persistent_workers: bool = setting(node, "persistent_workers", False)
        collate = setting(node, "collate_fn", None)
        self.collate_fn = import_object("data.collate_fn", collate) if isinstance(collate, str) else collate


def steps_per_epoch(num_train: int, world_size: int, batch_size: int, accumulate: int) -> int:
    per_rank_batches = (num_train // world_size) // batch_size
    return per_rank_batches // accumulate


def train_source(dataset: Any, rank: int, world_size: int, settings: LoaderSettings, seed: int):
    """A sharded split streams (``streaming/split.py``); any other dataset is map-style."""
    if hasattr(dataset, "train_source"):
        return dataset.train_source(rank, world_size, settings, seed)
    return MapTrain(dataset, rank, world_size, settings, seed)


def eval_loader(dataset: Any, rank: int, world_size: int, settings: LoaderSettings, seed: int):
    if hasattr(dataset, "eval_loader"):
        return dataset.eval_loader(rank, world_size, settings)
    return make_loader(dataset, EvalBatches(len(dataset), rank, world_size, settings.batch_size), settings, seed)
