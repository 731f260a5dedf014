"""Where checkpoint files live: a local folder (a path, or a ``file://`` URL) or any fsspec URL
(``s3://``, ``gs://``, ``memory://``, ...), behind one small interface the store, the writer and the
readers share.

Atomicity. A local folder gets a temporary name, fsync and rename (``os.replace``), so a file appears
whole or not at all. On other filesystems a file is written to a temporary name and moved where the
filesystem renames atomically (``renames_atomically``: its ``mv`` is one metadata operation), else
written under its final name: object stores have no rename (fsspec's ``mv`` is copy + delete), but an
object only becomes visible once its upload completes. Either way a checkpoint exists only once its
manifest does, and the manifest is written last, after the file is complete and its size checked: a
writer that dies mid-write leaves at worst a partial ``.pt`` without a manifest, never a damaged "latest".
"""

from __future__ import annotations

import fnmatch
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, List, Optional, Union

from orchestrator.config.errors import ConfigError

# fsspec protocols whose mv of one file is a single atomic metadata operation (besides local files,
# which are handled by LocalStorage). Object stores (s3, gs, az, ...) are not: their mv copies.
ATOMIC_RENAME_PROTOCOLS = {"memory"}
LOCAL_PROTOCOLS = {None, "file", "local"}


def protocol_of(location: str) -> Optional[str]:
    import fsspec

    return fsspec.core.split_protocol(str(location))[0]


def renames_atomically(protocol: Optional[str]) -> bool:
    return protocol in LOCAL_PROTOCOLS or protocol in ATOMIC_RENAME_PROTOCOLS


def check_location(location: str, key: str = "checkpoint.dir") -> None:
    """A ConfigError naming ``key`` when fsspec has no filesystem for the URL's scheme, or its package
    is not installed. Cheap: nothing is opened or connected."""
    import fsspec

    protocol = protocol_of(location)
    if protocol in LOCAL_PROTOCOLS:
        return
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as err:
        raise ConfigError(f"{key}: cannot use {location!r}: {err}") from None


class LocalStorage:
    """A folder on this machine's filesystem (or a shared one mounted here)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def __str__(self) -> str:
        return str(self.folder)

    def resolve(self) -> "LocalStorage":
        return LocalStorage(self.folder.resolve())

    def mkdir(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def local_path(self, name: str) -> Optional[Path]:
        return self.folder / name

    def names(self, pattern: str) -> List[str]:
        return sorted(p.name for p in self.folder.glob(pattern))

    def size(self, name: str) -> int:
        return (self.folder / name).stat().st_size

    def open_read(self, name: str) -> IO[bytes]:
        return open(self.folder / name, "rb")

    def remove(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)

    @contextmanager
    def writing(self, name: str) -> Iterator[IO[bytes]]:
        """A file to write ``name`` through: temporary name, fsync, rename, fsync of the folder."""
        self.mkdir()
        path = self.folder / name
        tmp = temp_name(path)
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(self.folder)


class FsspecStorage:
    """A folder on any fsspec filesystem, named by its URL."""

    def __init__(self, url: str):
        import fsspec

        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.atomic_rename = renames_atomically(protocol_of(url))

    def __str__(self) -> str:
        return self.url

    def resolve(self) -> "FsspecStorage":
        return self

    def mkdir(self) -> None:
        self.fs.makedirs(self.root, exist_ok=True)

    def local_path(self, name: str) -> Optional[Path]:
        return None

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def names(self, pattern: str) -> List[str]:
        if not self.fs.exists(self.root):
            return []
        found = (p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False))
        return sorted(n for n in found if fnmatch.fnmatchcase(n, pattern))

    def size(self, name: str) -> int:
        return int(self.fs.size(self.path(name)))  # FileNotFoundError (an OSError) when it is missing

    def open_read(self, name: str) -> IO[bytes]:
        return self.fs.open(self.path(name), "rb")

    def remove(self, name: str) -> None:
        try:
            self.fs.rm(self.path(name))
        except FileNotFoundError:
            pass

    @contextmanager
    def writing(self, name: str) -> Iterator[IO[bytes]]:
        self.mkdir()
        target = self.path(name)
        tmp = f"{self.root}/.{name}.tmp-{os.getpid()}" if self.atomic_rename else target
        with self.fs.open(tmp, "wb") as f:
            yield f
        if tmp != target:
            self.fs.mv(tmp, target)


Storage = Union[LocalStorage, FsspecStorage]


def open_storage(location: Union[str, Path, LocalStorage, FsspecStorage]) -> Storage:
    """The storage for a local path, a ``file://`` URL (the same local folder) or another fsspec URL."""
    if isinstance(location, (LocalStorage, FsspecStorage)):
        return location
    text = str(location)
    protocol = protocol_of(text) if "://" in text else None
    if protocol in LOCAL_PROTOCOLS:
        import fsspec

        return LocalStorage(Path(fsspec.core.split_protocol(text)[1]).expanduser())
    return FsspecStorage(text)


def write_bytes(storage: Storage, name: str, data: bytes) -> None:
    with storage.writing(name) as f:
        f.write(data)


def read_bytes(storage: Storage, name: str) -> bytes:
    with storage.open_read(name) as f:
        return f.read()


def each_chunk(storage: Storage, name: str, chunk: int) -> Iterator[bytes]:
    with storage.open_read(name) as f:
        yield from iter(lambda: f.read(chunk), b"")


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
