"""The pure parts of scripts/data_scaling.py (size planning, the guard, the table, the error line) and
the large-file writers of orchestrator/data/generate.py on a few rows. No Ray, nothing timed."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "scripts"))

from bench.data_scaling_io import error_line  # noqa: E402
from bench.data_scaling_plan import (GIB, PATHS, ROW_BYTES, ScalingRow, SizePlan, markdown_table,  # noqa: E402
                                     plan_sizes, shared_path_fits)


def test_plan_sizes_sorted_with_rows_of_the_size_and_a_file_per_rank():
    plans = plan_sizes([1, 0.25, 1])
    assert [p.gigabytes for p in plans] == [0.25, 1]
    assert plans[1].rows == GIB // ROW_BYTES and plans[1].float_bytes <= GIB < plans[1].float_bytes + ROW_BYTES
    assert 16 <= plans[1].files <= 17  # ~64 MiB files
    assert plans[1].idx_bytes == plans[1].float_bytes // 4
    tiny = plan_sizes([0.0001])[0]
    assert tiny.files >= 2


def test_plan_sizes_refuses_a_non_positive_size():
    with pytest.raises(ValueError, match="--sizes"):
        plan_sizes([0.5, 0])


@pytest.mark.parametrize("gigabytes, available_gib, runs", [(1, 16, True), (2, 16, True), (4, 16, False)])
def test_shared_path_guard(gigabytes, available_gib, runs):
    plan = SizePlan(gigabytes, int(gigabytes * GIB // ROW_BYTES), 1000)
    reason = shared_path_fits(plan, available_gib * GIB)
    assert (reason is None) == runs
    if not runs:
        assert reason.startswith("not run") and "16.0 GiB available" in reason


def test_table_groups_paths_in_order_and_keeps_failures_with_their_reason():
    streaming, shared = PATHS
    rows = [ScalingRow(shared, 2, "failed", note="ObjectStoreFullError | x", worker_rss_mib=900),
            ScalingRow(streaming, 2, "ok", worker_rss_mib=512.4, samples_per_s=12345.6, data_wait_pct=3.25),
            ScalingRow(streaming, 0.5, "ok", worker_rss_mib=500)]
    lines = markdown_table(rows).splitlines()
    assert len(lines) == 5 and lines[1].startswith("|---|")
    assert all(line.count("|") == lines[0].count("|") for line in lines)  # the "|" in the note is escaped
    assert lines[2].startswith(f"| {streaming} | 0.5 |") and lines[3].startswith(f"| {streaming} | 2 |")
    assert "| 512 |" in lines[3] and "12,346" in lines[3] and "| 3.2 |" in lines[3]
    assert lines[4].startswith(f"| {shared} | 2 |") and lines[4].endswith("failed: ObjectStoreFullError / x |")
    assert "| – |" in lines[4]  # no samples/s for a failed run


def test_error_line_prefers_the_summary_then_the_last_error_in_the_output(tmp_path):
    output = "starting\nTraceback (most recent call last):\nray.exceptions.ObjectStoreFullError: full\nbye\n"
    assert error_line(tmp_path, output, 1) == "ray.exceptions.ObjectStoreFullError: full (exit code 1)"
    (tmp_path / "summary.json").write_text(json.dumps({"error": "worker 1 died:\n  out of memory"}))
    assert error_line(tmp_path, output, 1) == "worker 1 died: out of memory"


def test_parquet_and_idx_writers_hold_the_same_rows(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from orchestrator.data import generate as G
    from orchestrator.data.idx import read_idx

    n = 2500
    G.write_parquet_chunks(tmp_path / "pq", G.digit_chunks(n, chunk_rows=1000), rows_per_file=900, row_group=400)
    G.write_idx_chunks(tmp_path / "idx", G.digit_chunks(n, chunk_rows=1000), n)
    files = sorted((tmp_path / "pq").iterdir())
    assert [pq.ParquetFile(f).metadata.num_rows for f in files] == [900, 900, 700]
    table = pq.read_table(files)
    ids = table.column("id").to_numpy()
    assert np.array_equal(ids, np.arange(n))
    x = table.column("x").combine_chunks().flatten().to_numpy().reshape(n, -1)
    images = read_idx(tmp_path / "idx" / "train-images-idx3-ubyte")
    assert images.shape == (n, 28, 28)
    assert np.array_equal(x, (images.astype(np.float32) / 255.0).reshape(n, -1))
    assert np.array_equal(table.column("label").to_numpy(), read_idx(tmp_path / "idx" / "train-labels-idx1-ubyte"))
