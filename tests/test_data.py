"""Datasets: every loader gives disjoint splits covering its data, deterministically for a seed."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from orchestrator import config as C
from orchestrator.data import builtin as D
from orchestrator.data.memory import DataBundle


def make_config(data: C.DataConfig, model: C.ModelConfig = None, seed: int = 0,
                loss: C.LossConfig = None) -> C.Config:
    if model is None:
        model = C.GPTConfig() if data.name == "text" else C.MLPConfig()
    return C.Config(model=model, data=data, optimizer=C.AdamConfig(), scheduler=C.ConstantSchedulerConfig(),
                    loss=loss or C.AutoLossConfig(), trainer=C.TrainerConfig(seed=seed))


def rows_with_labels(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(sample, label) pairs as rows, sorted: the multiset of a dataset, order ignored."""
    table = np.concatenate([x.reshape(len(x), -1).astype(np.float64),
                            y.reshape(len(y), -1).astype(np.float64)], axis=1)
    return table[np.lexsort(table.T[::-1])]


def all_splits(bundle: DataBundle, key: str) -> np.ndarray:
    return np.concatenate([bundle.arrays[f"{key}_{s}"] for s in ("train", "val", "test")])


# ----------------------------------------------------------------------------- splitting
@pytest.mark.parametrize("n,val,test", [(1797, 0.2, 0.0), (100, 0.1, 0.25), (7, 0.3, 0.3)])
def test_split_indices_are_disjoint_and_cover_everything(n, val, test):
    parts = D.split_indices(n, val, test, np.random.default_rng(0))
    joined = np.concatenate([parts["train"], parts["val"], parts["test"]])
    assert sorted(joined.tolist()) == list(range(n))
    assert len(parts["val"]) == round(n * val) and len(parts["test"]) == round(n * test)


# ----------------------------------------------------------------------------- digits
def test_digits_has_1797_8x8_images_in_0_1_across_the_splits():
    bundle = D.load(make_config(C.DigitsConfig(val_fraction=0.2, test_fraction=0.1)))
    spec = bundle.info
    assert (spec.task, spec.input_shape, spec.num_outputs('cross_entropy'), spec.num_classes) == \
           ("classification", (1, 8, 8), 10, 10)
    assert sum(spec.sizes.values()) == 1797
    assert spec.sizes == {s: bundle.num_samples(s) for s in ("train", "val", "test")}
    assert spec.sizes["val"] == 359 and spec.sizes["test"] == 180
    x = all_splits(bundle, "x")
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    assert sorted(set(all_splits(bundle, "y").tolist())) == list(range(10))


def test_digits_splits_are_disjoint_and_cover_the_dataset_with_labels_kept():
    images, labels = D.read_digits()
    bundle = D.load(make_config(C.DigitsConfig(val_fraction=0.2, test_fraction=0.1)))
    np.testing.assert_array_equal(rows_with_labels(all_splits(bundle, "x"), all_splits(bundle, "y")),
                                  rows_with_labels(images[:, None] / 16.0, labels))


def test_digits_fast_path_reads_exactly_what_scikit_learn_loads():
    from sklearn.datasets import load_digits

    images, labels = D.read_digits()
    reference = load_digits()
    np.testing.assert_array_equal(images, reference.images.astype(np.float32))
    np.testing.assert_array_equal(labels, reference.target)


def test_digits_resized_to_28_feeds_a_784_input_model():
    bundle = D.load(make_config(C.DigitsConfig(image_size=28)))
    assert bundle.info.input_shape == (1, 28, 28)
    assert bundle.arrays["x_train"].shape[1:] == (1, 28, 28)
    assert bundle.arrays["x_train"].dtype == np.float32
    assert sum(bundle.info.sizes.values()) == 1797


def test_digits_split_depends_on_the_seed_only():
    a, b = D.load(make_config(C.DigitsConfig(), seed=3)), D.load(make_config(C.DigitsConfig(), seed=3))
    c = D.load(make_config(C.DigitsConfig(), seed=4))
    for key in a.arrays:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key])
    assert not np.array_equal(a.arrays["y_train"], c.arrays["y_train"])


def test_random_labels_shuffles_train_labels_but_keeps_their_multiset():
    plain = D.load(make_config(C.DigitsConfig(), seed=1))
    shuffled = D.load(make_config(C.DigitsConfig(random_labels=True), seed=1))
    # Same split, same inputs; only the training labels moved.
    np.testing.assert_array_equal(shuffled.arrays["x_train"], plain.arrays["x_train"])
    np.testing.assert_array_equal(shuffled.arrays["y_val"], plain.arrays["y_val"])
    y_plain, y_shuffled = plain.arrays["y_train"], shuffled.arrays["y_train"]
    assert (y_plain != y_shuffled).mean() > 0.5  # ~90% differ for 10 balanced classes
    np.testing.assert_array_equal(np.sort(y_shuffled), np.sort(y_plain))


def test_bce_gets_a_single_output_logit():
    cfg = make_config(C.SyntheticClassificationConfig(num_classes=2, num_samples=50), loss=C.BCEConfig())
    info = D.load(cfg).info
    assert (info.num_outputs("bce"), info.num_classes) == (1, 2)


# ----------------------------------------------------------------------------- IDX / MNIST
IDX_TYPES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def write_idx(path: Path, array: np.ndarray) -> Path:
    """The IDX format: 0x00 0x00, a type code, ndim, big-endian uint32 dims, big-endian data."""
    code = IDX_TYPES[array.dtype.type]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_read_idx_plain_and_gzipped(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, size=(4, 3, 5), dtype=np.uint8)
    got = D.read_idx(write_idx(tmp_path / name, images))
    assert got.shape == (4, 3, 5)
    np.testing.assert_array_equal(got, images)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_big_endian_types(tmp_path, dtype):
    values = np.array([[-3, 0, 1], [2, 100, -100]], dtype=dtype)
    np.testing.assert_array_equal(D.read_idx(write_idx(tmp_path / "v.idx", values)), values)


def test_read_idx_rejects_a_file_that_is_not_idx(tmp_path):
    path = tmp_path / "not-idx"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 16)
    with pytest.raises(ValueError, match="not an IDX file"):
        D.read_idx(path)


def write_mnist(folder: Path, n: int, gz: bool, n_labels: int = None):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n_labels or n) % 10).astype(np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_a_folder_of_idx_files(tmp_path, gz):
    images, labels = write_mnist(tmp_path, 40, gz)
    bundle = D.load(make_config(C.MNISTConfig(path=str(tmp_path), val_fraction=0.25)))
    spec = bundle.info
    assert (spec.input_shape, spec.num_outputs('cross_entropy'), spec.num_classes) == ((1, 28, 28), 10, 10)
    assert spec.sizes == {"test": 0, "val": 10, "train": 30}
    x = all_splits(bundle, "x")
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    # Every image is there once, scaled to [0, 1], still with its own label.
    np.testing.assert_array_equal(rows_with_labels(x, all_splits(bundle, "y")),
                                  rows_with_labels(images[:, None].astype(np.float32) / 255.0, labels))


def test_load_mnist_without_the_files_names_data_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data\.path"):
        D.load(make_config(C.MNISTConfig(path=str(tmp_path))))


def test_load_mnist_with_more_images_than_labels_names_data_path(tmp_path):
    write_mnist(tmp_path, 20, gz=False, n_labels=19)
    with pytest.raises(ValueError, match=r"data\.path"):
        D.load(make_config(C.MNISTConfig(path=str(tmp_path))))


# ----------------------------------------------------------------------------- text
TEXT = "the quick brown fox jumps over the lazy dog\n" * 6  # 264 characters


def load_text(tmp_path, text=TEXT, **options) -> DataBundle:
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return D.load(make_config(C.TextConfig(path=str(path), **options)))


def decode(bundle: DataBundle, tokens) -> str:
    return "".join(bundle.info.vocabulary[t] for t in tokens)


def test_text_vocabulary_is_the_sorted_characters_and_tokens_decode_back(tmp_path):
    bundle = load_text(tmp_path, block_size=8)
    assert bundle.info.vocabulary == sorted(set(TEXT))
    assert bundle.info.num_outputs('cross_entropy') == len(set(TEXT)) == bundle.info.num_classes
    assert decode(bundle, bundle.arrays["tokens"]) == TEXT


def test_text_windows_fit_inside_their_contiguous_split(tmp_path):
    block = 8
    bundle = load_text(tmp_path, block_size=block, val_fraction=0.2, test_fraction=0.1)
    spec, n = bundle.info, len(TEXT)
    assert (spec.task, spec.input_shape) == ("language", (block,))
    n_train = n - int(n * 0.2) - int(n * 0.1)
    bounds = {"train": (0, n_train), "val": (n_train, n - int(n * 0.1)), "test": (n - int(n * 0.1), n)}
    for split, (lo, hi) in bounds.items():
        starts = bundle.arrays[f"x_{split}"]
        assert len(starts) == spec.sizes[split] > 0
        # Inputs and next-token targets (block + 1 tokens) stay inside the split.
        assert starts.min() >= lo and starts.max() + block + 1 <= hi
        # Non-overlapping windows (stride = block), as many as fit.
        assert np.all(np.diff(starts) == block)
        assert starts.max() + block + block + 1 > hi


def test_text_stride_makes_overlapping_windows(tmp_path):
    bundle = load_text(tmp_path, block_size=8, stride=2, val_fraction=0.0)
    starts = bundle.arrays["x_train"]
    assert starts[0] == 0 and np.all(np.diff(starts) == 2)
    assert len(starts) == len(range(0, len(TEXT) - 8, 2))


def test_text_max_chars_truncates(tmp_path):
    bundle = load_text(tmp_path, block_size=4, max_chars=50)
    assert decode(bundle, bundle.arrays["tokens"]) == TEXT[:50]


def test_text_too_short_for_a_window_names_block_size(tmp_path):
    with pytest.raises(ValueError, match=r"data\.block_size"):
        load_text(tmp_path, text="abcdefgh", block_size=8)


def test_default_corpus_is_the_python_stdlib_and_loads_offline():
    bundle = D.load(make_config(C.TextConfig(max_chars=20_000, block_size=32)))
    tokens = bundle.arrays["tokens"]
    assert len(tokens) == 20_000
    text = decode(bundle, tokens)
    assert text == D.default_corpus(20_000)
    assert "def " in text and "import " in text
    assert bundle.info.sizes["train"] == len(range(0, 16_000 - 32, 32))


# ----------------------------------------------------------------------------- synthetic
def test_synthetic_classification_sizes_shapes_and_separable_classes():
    data = C.SyntheticClassificationConfig(num_samples=600, num_features=6, num_classes=3, class_sep=8.0,
                                           sample_shape=[2, 3], val_fraction=0.25)
    bundle = D.load(make_config(data))
    assert bundle.info.input_shape == (2, 3)
    assert bundle.info.sizes == {"test": 0, "val": 150, "train": 450}
    assert (bundle.info.num_outputs('cross_entropy'), bundle.info.num_classes) == (3, 3)
    x_train, y_train = bundle.arrays["x_train"].reshape(450, 6), bundle.arrays["y_train"]
    x_val, y_val = bundle.arrays["x_val"].reshape(150, 6), bundle.arrays["y_val"]
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert set(np.unique(y_train)) == {0, 1, 2}
    # Labels follow the inputs: nearest class mean (from train) classifies validation well.
    means = np.stack([x_train[y_train == k].mean(axis=0) for k in range(3)])
    predicted = np.argmin(((x_val[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == y_val).mean() > 0.95


def test_synthetic_regression_is_linear_plus_the_configured_noise():
    data = C.SyntheticRegressionConfig(num_samples=400, num_features=5, num_targets=2, noise=0.0)
    bundle = D.load(make_config(data))
    spec = bundle.info
    assert (spec.task, spec.input_shape, spec.num_outputs('mse'), spec.num_classes) == ("regression", (5,), 2, None)
    x, y = all_splits(bundle, "x"), all_splits(bundle, "y")
    assert x.shape == (400, 5) and y.shape == (400, 2) and y.dtype == np.float32
    weights, *_ = np.linalg.lstsq(x, y, rcond=None)
    assert np.abs(x @ weights - y).max() < 1e-4
    assert np.abs(y).std() > 0.1


@pytest.mark.parametrize("data", [
    C.SyntheticClassificationConfig(num_samples=64, num_features=4),
    C.SyntheticRegressionConfig(num_samples=64, num_features=4),
], ids=["classification", "regression"])
def test_synthetic_data_is_a_function_of_the_seed(data):
    a, b = D.load(make_config(data, seed=7)), D.load(make_config(data, seed=7))
    c = D.load(make_config(data, seed=8))
    assert a.arrays.keys() == b.arrays.keys()
    for key in a.arrays:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key])
    assert not np.array_equal(a.arrays["x_train"], c.arrays["x_train"])
