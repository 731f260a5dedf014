"""The text data set's loading: a UTF-8 file (or Python's own standard-library sources) as character
tokens, cut into contiguous splits of fixed-size windows. ``Text.check`` uses the same reading on the
driver before Ray starts, so a binary, empty or too short file fails there.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from orchestrator.config.errors import ConfigError
from orchestrator.data import checks
from orchestrator.data.memory import DataBundle
from orchestrator.data.module import DataInfo


def default_corpus(max_chars: int) -> str:
    """Python's own standard-library sources: a text corpus present on every machine with Python."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(stdlib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return "".join(parts)[:max_chars]


def read_text_file(path: Path, max_chars: int) -> Tuple[str, Optional[str]]:
    """The first max_chars characters and a warning if a few bytes are not UTF-8; a ConfigError if
    many are (a binary file passed by mistake would otherwise train on replacement characters)."""
    with open(path, "rb") as f:
        raw = f.read(4 * max_chars)  # a UTF-8 character is at most 4 bytes
    text, share = checks.undecodable_share(raw)
    error, warning = checks.decoding_verdict(share, str(path))
    if error:
        raise ConfigError(error)
    return text[:max_chars], warning


def text_too_short(data: "Text", n: int) -> str:
    where = f"{data.path}" if data.path else "the default corpus"
    if n == 0:
        return f"data.path: {where} is empty"
    return (f"data.path: {where} has {n} characters, too few for one training window of data.block_size="
            f"{data.block_size} (+1 target) after data.val_fraction={data.split['val_fraction']} and "
            f"data.test_fraction={data.split['test_fraction']} are cut off")


def load_text(data: "Text") -> DataBundle:
    if data.path:
        text, _ = read_text_file(Path(data.path).expanduser(), data.max_chars)
    else:
        text = default_corpus(data.max_chars)
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    vocab_codes, tokens = np.unique(codepoints, return_inverse=True)
    tokens = tokens.astype(np.int64)
    block, stride = data.block_size, data.stride or data.block_size
    # Contiguous splits (as in nanoGPT), so validation text is never seen in training.
    n = len(tokens)
    bounds = checks.text_bounds(n, data.split)
    arrays = {"tokens": tokens}
    sizes = {}
    for split, (lo, hi) in bounds.items():
        # A window needs block + 1 tokens: inputs and the next-token targets.
        starts = np.arange(lo, max(lo, hi - block), stride, dtype=np.int64)  # s + block + 1 <= hi
        arrays[f"x_{split}"] = starts
        arrays[f"y_{split}"] = starts
        sizes[split] = len(starts)
    if sizes["train"] == 0:
        raise ConfigError(text_too_short(data, n))
    vocabulary = [chr(c) for c in vocab_codes]
    info = DataInfo(task="language", input_shape=(block,), num_classes=len(vocabulary), sizes=sizes,
                    vocabulary=vocabulary)
    return DataBundle(info=info, arrays=arrays)


