"""Pure decisions about the data the driver can make before Ray starts: split sizes from a sample
count (without loading), whether ``data.batch_size`` fits a worker's share, and how much of a text
file is not UTF-8. No file access, no torch: each is a table-testable function.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

# More undecodable bytes than this share of a text file: not a text file (a binary passed by
# mistake), a configuration error. Fewer (a stray Latin-1 byte): a warning with the share.
MAX_UNDECODABLE_SHARE = 0.01


def labelled_sizes(n: int, split: Dict) -> Dict[str, int]:
    """Split sizes of ``n`` labelled samples, as ``builtin.labelled_bundle`` cuts them
    (``split_indices`` or, with cv_folds, ``fold_indices``)."""
    n_test = int(round(n * split["test_fraction"]))
    folds = split["cv_folds"]
    if folds:
        rest = n - n_test
        # np.array_split: the first rest % folds parts hold one sample more.
        n_val = rest // folds + (1 if split["cv_fold"] < rest % folds else 0)
        return {"test": n_test, "val": n_val, "train": rest - n_val}
    n_val = int(round(n * split["val_fraction"]))
    return {"test": n_test, "val": n_val, "train": n - n_val - n_test}


def text_bounds(n: int, split: Dict) -> Dict[str, Tuple[int, int]]:
    """Contiguous character ranges of the text splits (as in nanoGPT: validation text is never trained on)."""
    n_test, n_val = int(n * split["test_fraction"]), int(n * split["val_fraction"])
    return {"train": (0, n - n_val - n_test), "val": (n - n_val - n_test, n - n_test), "test": (n - n_test, n)}


def window_count(lo: int, hi: int, block: int, stride: int) -> int:
    """Windows of block + 1 characters (inputs and next-token targets) starting every ``stride`` in [lo, hi)."""
    return len(range(lo, max(lo, hi - block), stride))


def text_sizes(n: int, block: int, stride: int, split: Dict) -> Dict[str, int]:
    return {name: window_count(lo, hi, block, stride) for name, (lo, hi) in text_bounds(n, split).items()}


def batch_size_problem(train_size: Optional[int], world_size: int, batch_size: int,
                       accumulate: int) -> Optional[str]:
    """Why ``data.batch_size`` cannot give one optimizer step, or None (also when the size is unknown).
    The same arithmetic as ``loader.steps_per_epoch``: each rank keeps train_size // world_size samples."""
    if train_size is None:
        return None
    share = train_size // world_size
    if (share // batch_size) // accumulate > 0:
        return None
    per_step = f"{accumulate} batches" if accumulate > 1 else "one batch"
    largest = share // accumulate
    fix = f"at most {largest} fits" if largest > 0 else "use fewer workers or more data"
    return (f"data.batch_size={batch_size} is larger than a worker's share of the data: {train_size} training "
            f"samples give each of {world_size} workers {share}, fewer than {per_step} of {batch_size} "
            f"(trainer.accumulate_grad_batches={accumulate}); {fix}")


def undecodable_share(raw: bytes) -> Tuple[str, float]:
    """The text (undecodable bytes replaced by U+FFFD, as training sees it) and the share of bytes
    that are not UTF-8."""
    # Dropping the undecodable bytes and encoding the rest again gives back exactly the valid bytes.
    bad = len(raw) - len(raw.decode("utf-8", errors="ignore").encode("utf-8"))
    return raw.decode("utf-8", errors="replace"), (bad / len(raw) if raw else 0.0)


def decoding_verdict(share: float, path: str) -> Tuple[Optional[str], Optional[str]]:
    """(error, warning) for a text file with ``share`` undecodable bytes."""
    if share > MAX_UNDECODABLE_SHARE:
        return (f"data.path: {path} is not UTF-8 text: {share:.1%} of its bytes cannot be decoded (at most "
                f"{MAX_UNDECODABLE_SHARE:.0%} is accepted). A binary file passed by mistake, or text in another "
                "encoding (convert it, e.g. iconv -f latin1 -t utf-8)"), None
    if share > 0:
        return None, (f"data.path: {share:.3%} of the bytes of {path} are not UTF-8; they train as the "
                      "replacement character U+FFFD")
    return None, None
