"""``data=webdataset``: sharded tar archives in the WebDataset layout (the files of one sample share a
key: ``000017.png``, ``000017.cls``). The driver walks each archive's headers to count samples and
read the small label files; each worker streams its own archives with webdataset's tar iterator.
The input is the first of ``data.input_keys`` a sample has (an image, ``.npy`` or ``.pth``), the
label ``data.label_key`` (an integer in text, as ``.cls`` files hold)."""

from __future__ import annotations

import io
import tarfile
import threading
from typing import Any, Dict, Iterator, List, Optional, Sequence

from orchestrator.data.files import open_file
from orchestrator.data.images import decode_image, image_channels
from orchestrator.data.module import DataInfo
from orchestrator.data.streaming.module import ShardedData

IMAGE_KEYS = ("png", "jpg", "jpeg", "webp", "bmp")
_INDEX_LOCK = threading.Lock()


def sample_key(name: str) -> tuple:
    from webdataset.tariterators import base_plus_ext

    return base_plus_ext(name)


class TarSamples:
    """The reader: raw samples (a dict of bytes per extension) from sample ``start`` on."""

    def __init__(self, input_keys: Sequence[str], label_key: str, channels: Optional[int],
                 image_size: Optional[int]):
        self.input_keys, self.label_key = list(input_keys), label_key
        self.channels, self.image_size = channels, image_size

    def read(self, url: str, start: int) -> Iterator[Dict[str, Any]]:
        from webdataset.tariterators import group_by_keys, tar_file_iterator

        with open_file(url) as stream:
            files = ({**member, "__url__": url} for member in tar_file_iterator(stream))
            for i, sample in enumerate(group_by_keys(files)):
                if i >= start:
                    yield sample

    def input_key(self, raw: Dict[str, Any]) -> str:
        key = next((k for k in self.input_keys if k in raw), None)
        if key is None:
            raise KeyError(f"no input ({'/'.join(self.input_keys)}) among {sorted(k for k in raw if k[0] != '_')}")
        return key

    def decode(self, raw: Dict[str, Any]) -> Any:
        import numpy as np
        import torch

        key = self.input_key(raw)
        data = raw[key]
        if key in IMAGE_KEYS:
            x = decode_image(data, self.channels or image_channels(data), self.image_size)
        elif key == "npy":
            x = torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False)).float()
        else:  # .pth: a tensor saved with torch.save
            x = torch.load(io.BytesIO(data), weights_only=True).float()
        return x, torch.tensor(int(raw[self.label_key].decode().strip()))

    def describe(self, url: str, raw: Any) -> str:
        return f"{url} sample {raw.get('__key__')}"


class WebDataset(ShardedData):
    suffixes = (".tar",)

    def __init__(self, path: str, input_keys: Optional[List[str]] = None, label_key: str = "cls",
                 channels: Optional[int] = None, image_size: Optional[int] = None, **settings):
        super().__init__(path, **settings)
        self.input_keys = list(input_keys or [*IMAGE_KEYS, "npy", "pth"])
        self.label_key, self.channels, self.image_size = label_key, channels, image_size
        self.label_max = -1

    def count(self, url: str) -> int:
        """Samples in one archive: its headers (tarfile seeks over the members' data) and label files."""
        keys, labels = set(), []
        with open_file(url) as handle, tarfile.open(fileobj=handle, mode="r:") as archive:
            for member in archive:
                if not member.isreg():
                    continue
                key, ext = sample_key(member.name)
                keys.add(key)
                if ext == self.label_key:
                    labels.append(int(archive.extractfile(member).read().decode().strip()))
        with _INDEX_LOCK:
            self.label_max = max([self.label_max, *labels])
        return len(keys)

    def reader(self) -> TarSamples:
        return TarSamples(self.input_keys, self.label_key, self.channels, self.image_size)

    def describe_data(self, splits: Dict) -> DataInfo:
        reader = self.reader()
        raw = next(reader.read(splits["train"].index.urls[0], 0))
        if self.channels is None and reader.input_key(raw) in IMAGE_KEYS:
            # Every rank reads the same first sample, so all agree on the channels.
            self.channels = reader.channels = image_channels(raw[reader.input_key(raw)])
            for split in splits.values():
                split.settings.reader = reader
        x, _ = reader.decode(raw)
        return DataInfo(task="classification", input_shape=tuple(x.shape), num_classes=self.label_max + 1)
