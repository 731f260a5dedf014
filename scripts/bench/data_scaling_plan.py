"""The pure parts of ``scripts/data_scaling.py``: which datasets to write (rows and files per size),
whether the shared-memory path may run on this machine, and the markdown table of the results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

IMAGE_SIZE = 28
ROW_BYTES = IMAGE_SIZE * IMAGE_SIZE * 4  # one float32 sample: what both paths train on
GIB = 2**30
MIB = 2**20
# The driver of data=mnist holds, at its peak, the IDX bytes (1/4), the float32 images, the /255 result
# and the split copies before they are put in the object store: a cautious estimate (the 2026-12-01 run
# measured 2.2x at 2 GiB) in a guard that keeps this benchmark from crowding a shared machine.
SHARED_DRIVER_FACTOR = 3.5
PATHS = ("streaming (data=parquet)", "shared memory (data=mnist)")


@dataclass(frozen=True)
class SizePlan:
    gigabytes: float  # float32 features, as the model sees them (GiB)
    rows: int
    rows_per_file: int  # Parquet files of about FILE_MIB

    @property
    def files(self) -> int:
        return -(-self.rows // self.rows_per_file)

    @property
    def float_bytes(self) -> int:
        return self.rows * ROW_BYTES

    @property
    def idx_bytes(self) -> int:
        return self.rows * ROW_BYTES // 4  # uint8 pixels on disk


def plan_sizes(sizes_gb: Sequence[float], file_mib: float = 64.0) -> List[SizePlan]:
    """One dataset per size, smallest first; every size has at least 2 files (one per rank)."""
    plans = []
    for gb in sorted(set(sizes_gb)):
        if gb <= 0:
            raise ValueError(f"--sizes: {gb} is not a positive size in GB")
        rows = int(gb * GIB // ROW_BYTES)
        rows_per_file = max(1, min(int(file_mib * MIB // ROW_BYTES), rows // 2))
        plans.append(SizePlan(gb, rows, rows_per_file))
    return plans


def shared_path_fits(plan: SizePlan, available_bytes: int, share: float = 0.5) -> Optional[str]:
    """None when the shared-memory path may run; else why not (its driver would take more than
    ``share`` of the memory available now, on a machine other people use too)."""
    need = plan.float_bytes * SHARED_DRIVER_FACTOR
    if need <= available_bytes * share:
        return None
    return (f"not run: its driver would need ~{need / GIB:.1f} GiB "
            f"(> {share:.0%} of the {available_bytes / GIB:.1f} GiB available)")


@dataclass
class ScalingRow:
    path: str
    gigabytes: float
    status: str  # "ok" or "failed" / "not run: ..." with the reason in note
    note: str = ""
    worker_rss_mib: Optional[float] = None  # the larger of the 2 ranks' peaks
    worker_uss_mib: Optional[float] = None
    driver_rss_mib: Optional[float] = None
    total_pss_mib: Optional[float] = None  # every process of the job at once (PSS: shared pages split)
    samples_per_s: Optional[float] = None
    data_wait_pct: Optional[float] = None
    load_s: Optional[float] = None  # the driver's load + share into the object store
    wall_s: Optional[float] = None
    ray_tmp_peak_mib: Optional[float] = None  # spilled / fallback-allocated objects on disk
    per_rank_rss_mib: List[float] = field(default_factory=list)


def fmt(value: Optional[float], spec: str = ",.0f") -> str:
    return "–" if value is None else format(value, spec)


COLUMNS = [
    ("path", lambda r: r.path),
    ("data (GiB)", lambda r: fmt(r.gigabytes, "g")),
    ("peak RSS / worker (MiB)", lambda r: fmt(r.worker_rss_mib)),
    ("peak USS / worker (MiB)", lambda r: fmt(r.worker_uss_mib)),
    ("driver peak RSS (MiB)", lambda r: fmt(r.driver_rss_mib)),
    ("whole job peak PSS (MiB)", lambda r: fmt(r.total_pss_mib)),
    ("Ray temp dir peak (MiB)", lambda r: fmt(r.ray_tmp_peak_mib)),
    ("samples/s", lambda r: fmt(r.samples_per_s)),
    ("data wait (%)", lambda r: fmt(r.data_wait_pct, ".1f")),
    ("driver load+share (s)", lambda r: fmt(r.load_s, ".1f")),
    ("result", lambda r: r.status if not r.note else f"{r.status}: {r.note}"),
]


def markdown_table(rows: Sequence[ScalingRow]) -> str:
    """Rows grouped by path, each path's sizes ascending."""
    order = {p: i for i, p in enumerate(PATHS)}
    ordered = sorted(rows, key=lambda r: (order.get(r.path, len(order)), r.path, r.gigabytes))
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |",
             "|---|" + "---:|" * (len(COLUMNS) - 2) + "---|"]
    for row in ordered:
        cells = [get(row).replace("|", "/").replace("\n", " ") for _, get in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
