"""Finding data files by path or URL (fsspec: a local folder, ``file://``, ``s3://``, ``gs://``,
``memory://``, ...) and opening them. Only names and sizes are read here; the driver uses this to
list shards, each worker to open its own."""

from __future__ import annotations

from typing import List, Sequence

from orchestrator.config.errors import ConfigError


def filesystem(url: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:  # an unknown protocol, or its package is not installed
        raise ConfigError(f"data.path: cannot open {url!r}: {err}") from err


def list_files(url: str, suffixes: Sequence[str], key: str = "data.path") -> List[str]:
    """Every file under ``url`` (a folder, searched recursively; a single file; or a glob) whose name
    ends with one of ``suffixes``, sorted, as URLs fsspec opens. A missing path or no such file is a
    ConfigError naming ``key``."""
    fs, root = filesystem(url)
    if any(ch in root for ch in "*?["):
        paths = fs.glob(root)
    elif fs.isdir(root):
        paths = fs.find(root)
    elif fs.exists(root):
        paths = [root]
    else:
        raise ConfigError(f"{key}: {url} does not exist")
    found = sorted(p for p in paths if p.lower().endswith(tuple(suffixes)) and not fs.isdir(p))
    if not found:
        raise ConfigError(f"{key}: no {'/'.join(suffixes)} files in {url}")
    return [fs.unstrip_protocol(p) if "://" in url else p for p in found]


def open_file(url: str, mode: str = "rb"):
    import fsspec

    return fsspec.open(url, mode).open()


def child_dirs(url: str, key: str = "data.path") -> List[str]:
    """The names of the folders directly in ``url`` (sorted)."""
    fs, root = filesystem(url)
    if not fs.isdir(root):
        raise ConfigError(f"{key}: {url} " + ("is not a folder" if fs.exists(root) else "does not exist"))
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False) if fs.isdir(p))
