"""What the driver checks about the data before Ray starts (issue 10, items 12 and 14): sizes known
without loading, data.batch_size against a worker's share, corrupt IDX files, empty, short and
non-UTF-8 text files. Pure functions and the built-in DataModules' check(); no Ray."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from orchestrator import config as C
from orchestrator.components import registry
from orchestrator.config import ConfigError
from orchestrator.data import builtin as D
from orchestrator.data import checks
from orchestrator.data.loader import steps_per_epoch
from orchestrator.data.module import data_module
from orchestrator.policy.failure import Action, Failure, Kind, decide
from tests.test_data import make_config, write_mnist


def module_of(data: C.DataConfig, seed: int = 0):
    return data_module(registry.spec(make_config(data, seed=seed), "data"), seed)


# ----------------------------------------------------------------------------- sizes without loading
@pytest.mark.parametrize("data", [
    C.DigitsConfig(),
    C.DigitsConfig(val_fraction=0.3, test_fraction=0.15),
    C.DigitsConfig(cv_folds=5, cv_fold=4, test_fraction=0.1),
    C.DigitsConfig(cv_folds=7, cv_fold=0),
    C.SyntheticClassificationConfig(num_samples=1001, val_fraction=0.33),
    C.SyntheticClassificationConfig(num_samples=999, cv_folds=4, cv_fold=3),
    C.SyntheticRegressionConfig(num_samples=777, test_fraction=0.05),
    C.TextConfig(max_chars=20_000, block_size=32),
    C.TextConfig(max_chars=5_003, block_size=16, stride=5, val_fraction=0.13, test_fraction=0.07),
])
def test_check_reports_the_split_sizes_load_gives(data):
    module = module_of(data)
    assert module.check().sizes == module.load().info.sizes


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_check_reports_the_sizes_from_the_headers(tmp_path, gz):
    write_mnist(tmp_path, 41, gz)
    module = module_of(C.MNISTConfig(path=str(tmp_path), val_fraction=0.25))
    assert module.check().sizes == module.load().info.sizes == {"train": 31, "val": 10, "test": 0}


# ----------------------------------------------------------------------------- data.batch_size
@pytest.mark.parametrize("train,workers,batch,accumulate,fits", [
    (1438, 2, 719, 1, True),
    (1438, 2, 720, 1, False),
    (1438, 2, 2000, 1, False),
    (1438, 2, 359, 2, True),
    (1438, 2, 360, 2, False),
    (10, 16, 1, 1, False),        # fewer samples than workers
    (None, 2, 10**9, 1, True),    # size unknown on the driver (a user's dataset): the workers check
])
def test_batch_size_problem_agrees_with_the_workers_schedule(train, workers, batch, accumulate, fits):
    problem = checks.batch_size_problem(train, workers, batch, accumulate)
    assert (problem is None) == fits
    if train is not None:
        assert (steps_per_epoch(train, workers, batch, accumulate) > 0) == fits
    if not fits:
        assert problem.startswith(f"data.batch_size={batch} ") and "\n" not in problem


def test_batch_size_problem_says_what_fits():
    assert "at most 719 fits" in checks.batch_size_problem(1438, 2, 2000, 1)
    assert "use fewer workers" in checks.batch_size_problem(1, 2, 1, 1)


def test_a_configuration_error_on_a_worker_is_not_restarted():
    failure = Failure(Kind.EXCEPTION, 0, 0, "data.batch_size=5000 is larger than ...", error_type="ConfigError")
    decision = decide(failure, [], max_failures=3)
    assert decision.action is Action.RAISE and "configuration" in decision.reason
    other = Failure(Kind.EXCEPTION, 0, 0, "boom", error_type="ValueError")
    assert decide(other, [], max_failures=3).action is Action.RESTART


# ----------------------------------------------------------------------------- IDX files
def idx_header(code: int, shape) -> bytes:
    return struct.pack(">BBBB", 0, 0, code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


def mnist_folder(tmp_path: Path, images: bytes, labels: bytes, gz: bool = False) -> Path:
    suffix = ".gz" if gz else ""
    for name, raw in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        path = tmp_path / f"{name}{suffix}"
        if gz:
            with gzip.open(path, "wb") as f:
                f.write(raw)
        else:
            path.write_bytes(raw)
    return tmp_path


LABELS = idx_header(0x08, (10,)) + bytes(range(10))
IMAGES = idx_header(0x08, (10, 28, 28)) + b"\x00" * 7840


@pytest.mark.parametrize("images,labels,message", [
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, LABELS, "not an IDX file"),
    (b"\x00\x00", LABELS, "not an IDX file"),
    (idx_header(0x08, (10, 28, 28))[:9], LABELS, "truncated"),
    (IMAGES[:1000], LABELS, r"truncated: its header promises \(10, 28, 28\)"),
    (idx_header(0x08, (10, 784)) + b"\x00" * 7840, LABELS, "2-dimensional"),
    (IMAGES, idx_header(0x08, (9,)) + bytes(9), "10 images .* but 9 labels"),
])
def test_a_corrupt_mnist_folder_fails_in_check_naming_data_path_and_the_file(tmp_path, images, labels, message):
    folder = mnist_folder(tmp_path, images, labels)
    with pytest.raises(ConfigError, match=message) as err:
        module_of(C.MNISTConfig(path=str(folder))).check()
    assert str(err.value).startswith("data.path: ") and str(folder) in str(err.value)


def test_a_truncated_gzipped_idx_file_fails_on_load_naming_the_file(tmp_path):
    folder = mnist_folder(tmp_path, IMAGES[:1000], LABELS, gz=True)
    module = module_of(C.MNISTConfig(path=str(folder)))
    module.check()  # a gzipped file's length is known only by decompressing it
    with pytest.raises(ConfigError, match=r"data\.path: .*train-images-idx3-ubyte\.gz is truncated"):
        module.load()


def test_a_file_that_is_not_gzip_behind_a_gz_name_names_the_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(IMAGES)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(LABELS)
    with pytest.raises(ConfigError, match=r"data\.path: cannot read .*train-images-idx3-ubyte\.gz"):
        module_of(C.MNISTConfig(path=str(tmp_path))).check()


# ----------------------------------------------------------------------------- text files
def text_module(tmp_path: Path, raw: bytes, **options):
    path = tmp_path / "corpus.txt"
    path.write_bytes(raw)
    return module_of(C.TextConfig(path=str(path), **options)), path


@pytest.mark.parametrize("raw,message", [
    (b"", "is empty"),
    (b"ab", "has 2 characters, too few for one training window of data.block_size=64"),
    (b"x" * 65, "has 65 characters"),  # 65 chars, but val_fraction cuts the training part below a window
])
def test_an_empty_or_too_short_text_fails_in_check_naming_data_path_and_the_file(tmp_path, raw, message):
    module, path = text_module(tmp_path, raw)
    with pytest.raises(ConfigError, match=message) as err:
        module.check()
    assert str(err.value).startswith("data.path: ") and str(path) in str(err.value)


@pytest.mark.parametrize("raw,share", [
    (b"plain ascii", 0.0),
    ("caf\u00e9 \u00fcber \u65e5\u672c".encode(), 0.0),
    (b"caf\xe9", 0.25),                 # Latin-1: one undecodable byte of four
    (b"\xff\xfe\x00\x01", 0.5),         # \x00 and \x01 are valid UTF-8 (control characters)
    (b"", 0.0),
])
def test_undecodable_share_counts_the_bytes_that_are_not_utf8(raw, share):
    text, got = checks.undecodable_share(raw)
    assert got == pytest.approx(share)
    assert text == raw.decode("utf-8", errors="replace")  # what training sees


def test_a_binary_file_as_text_fails_with_the_share_of_undecodable_bytes(tmp_path):
    raw = np.random.default_rng(0).integers(0, 256, size=4096, dtype=np.uint8).tobytes()
    module, path = text_module(tmp_path, raw)
    with pytest.raises(ConfigError, match=r"is not UTF-8 text: \d+\.\d% of its bytes cannot be decoded") as err:
        module.check()
    assert str(err.value).startswith("data.path: ") and str(path) in str(err.value)
    with pytest.raises(ConfigError, match="not UTF-8"):
        module.load()  # also without check() (orchestrator.data.builtin.load, benchmarks)


def test_a_few_undecodable_bytes_only_warn_with_their_share(tmp_path):
    module, path = text_module(tmp_path, b"plain text. " * 1000 + b"\xe9", block_size=8)
    report = module.check()
    assert len(report.warnings) == 1
    assert f"0.008% of the bytes of {path} are not UTF-8" in report.warnings[0]
    assert module_of(C.TextConfig(path=str(path), block_size=8)).check().sizes["train"] > 0


def test_the_undecodable_threshold_is_a_small_share():
    assert checks.decoding_verdict(0.0, "f") == (None, None)
    error, warning = checks.decoding_verdict(checks.MAX_UNDECODABLE_SHARE, "f")
    assert error is None and "f are not UTF-8" in warning
    error, warning = checks.decoding_verdict(checks.MAX_UNDECODABLE_SHARE * 1.01, "f")
    assert warning is None and error.startswith("data.path: f is not UTF-8 text")
