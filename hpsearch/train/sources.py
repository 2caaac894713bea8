"""Reading the built-in data sets from disk into whole uint8 tensors, once per process.

`digits` is bundled with scikit-learn. `mnist`, `fashion_mnist` and `cifar10` are read by
torchvision from a data folder. hpsearch never writes into the user's data folder (often a
shared one): a data set already extracted there is read in place; archives found there are
copied into the cache folder hpsearch owns, where torchvision extracts them; downloads go to
the cache too. Only when the data folder *is* the cache does work happen in it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from hpsearch.errors import DataError

# Setting this to 1 skips torchvision's download attempt (offline machines, tests): a missing
# data set then fails at once with the message that says which files to put where.
NO_DOWNLOAD_ENV = "HPSEARCH_NO_DOWNLOAD"

DIGITS_TEST_FRACTION = 0.2  # digits has no official test split: hold out a fixed 20%
DIGITS_TEST_SEED = 1797  # fixed, independent of config.seed and config.split_seed


@dataclass(frozen=True)
class RawData:
    """A built-in data set as stored: images (N, C, H, W) uint8 on the CPU, labels int64."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int


@dataclass(frozen=True)
class _Source:
    cls_name: str  # the torchvision.datasets class
    folder: str  # where the user's files go, relative to the data folder
    files: tuple[str, ...]  # what the user must provide there
    extracted: str = ""  # an alternative to `files`: the extracted folder, for messages


_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
TORCHVISION_SOURCES: dict[str, _Source] = {
    "mnist": _Source("MNIST", "MNIST/raw", _MNIST_FILES),
    "fashion_mnist": _Source("FashionMNIST", "FashionMNIST/raw", _MNIST_FILES),
    "cifar10": _Source("CIFAR10", "", ("cifar-10-python.tar.gz",), "cifar-10-batches-py"),
}
BUILTIN_DATASETS = ("digits", *TORCHVISION_SOURCES)

_RAW_CACHE: dict[tuple[str, str], RawData] = {}


def read_builtin(name: str, root: Path, cache: Path) -> RawData:
    """The whole data set `name`, read once per process (reading files is the slow part).

    `root` is the user's data folder, only ever read; `cache` the folder hpsearch owns, where
    archives are copied, extracted and downloaded (it may be `root` itself).
    """
    key = (name, "" if name == "digits" else str(root))
    if key not in _RAW_CACHE:
        is_digits = name == "digits"
        _RAW_CACHE[key] = _read_digits() if is_digits else _read_torchvision(name, root, cache)
    return _RAW_CACHE[key]


def _read_digits() -> RawData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are integer counts 0..16 on an 8x8 grid: uint8 loses nothing.
    x = torch.as_tensor(bunch.images, dtype=torch.uint8).unsqueeze(1)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(DIGITS_TEST_SEED))
    n_test = round(DIGITS_TEST_FRACTION * len(y))  # 359 of 1797
    test, train = perm[:n_test], perm[n_test:]
    return RawData(x[train], y[train], x[test], y[test], num_classes=10)


def _read_torchvision(name: str, root: Path, cache: Path) -> RawData:
    train, test = _open_torchvision(name, root, cache)
    return RawData(*_tensors(train), *_tensors(test), num_classes=len(train.classes))


def _tensors(ds) -> tuple[Tensor, Tensor]:
    """The whole split at once: no per-sample Python work."""
    data = ds.data
    if isinstance(data, Tensor):  # MNIST family: (N, H, W) uint8
        x = data.unsqueeze(1)
    else:  # CIFAR: numpy (N, H, W, C) uint8 -> (N, C, H, W)
        x = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
    return x, torch.as_tensor(ds.targets, dtype=torch.int64)


def _open_torchvision(name: str, root: Path, cache: Path):
    import torchvision.datasets

    source = TORCHVISION_SOURCES[name]
    cls = getattr(torchvision.datasets, source.cls_name)
    # Worker processes starting together must not extract at once. The lock file lives in
    # the cache, never in the user's folder.
    with _folder_lock(cache):
        return _open_or_fetch(name, cls, source, root, cache)


def _open_or_fetch(name: str, cls, source: _Source, root: Path, cache: Path):
    for folder in dict.fromkeys([root, cache]):  # already extracted: read in place, read only
        opened = _try_open(cls, folder)
        if opened is not None:
            return opened
    if root.resolve() != cache.resolve():
        _copy_archives(source, root, cache)  # the user's folder stays untouched
    missing = _missing_archives(source, cache)  # absent from both folders: the user must add
    if os.environ.get(NO_DOWNLOAD_ENV) == "1" and missing:
        why = f"download skipped: {NO_DOWNLOAD_ENV}=1"
        raise DataError(missing_message(name, root, why, missing))
    try:
        # torchvision reports progress on stdout; keep stdout clean for the CLI's own output.
        with contextlib.redirect_stdout(sys.stderr):
            return _both_splits(cls, cache, download=True)
    except Exception as exc:  # no network, a bad archive, a full disk...
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise DataError(missing_message(name, root, f"download failed: {detail}", missing)) from exc


def _try_open(cls, folder: Path):
    try:
        return _both_splits(cls, folder, download=False)
    except Exception:  # torchvision's "Dataset not found" / "corrupted", a truncated file...
        return None


def _both_splits(cls, folder: Path, download: bool):
    """The official (train, test) splits of torchvision data set `cls` in `folder`."""
    return tuple(cls(str(folder), train=split, download=download) for split in (True, False))


def missing_message(name: str, root: Path, why: str, missing: tuple[str, ...] = ()) -> str:
    """One line: where the data set was looked for, why it is missing and which files to add.

    `missing`: the archives absent; none given (or none absent, e.g. a corrupt archive that
    failed its checksum) names them all.
    """
    source = TORCHVISION_SOURCES[name]
    folder = root / source.folder if source.folder else root
    files = ", ".join(missing or source.files)
    alternative = f" (or the extracted {source.extracted} folder)" if source.extracted else ""
    return (
        f"{name}: data set not found in {folder} ({why}); fix: put {files}{alternative} there, "
        f"or pass --data-dir / set HPSEARCH_DATA_DIR"
    )


def _missing_archives(source: _Source, folder: Path) -> tuple[str, ...]:
    return tuple(f for f in source.files if not (folder / source.folder / f).is_file())


def _copy_archives(source: _Source, root: Path, cache: Path) -> None:
    """Copy the archives found in `root` into `cache`, where torchvision may extract them."""
    target = cache / source.folder
    for file in source.files:
        src, dst = root / source.folder / file, target / file
        if src.is_file() and not dst.is_file():
            target.mkdir(parents=True, exist_ok=True)
            partial = dst.with_name(f"{dst.name}.{os.getpid()}.part")
            shutil.copyfile(src, partial)  # copyfile, not copy2: the copy must stay writable
            os.replace(partial, dst)  # atomic: nobody sees a half-copied archive


@contextlib.contextmanager
def _folder_lock(folder: Path):
    """An exclusive lock on `folder` (always the cache) across processes, where possible."""
    try:
        import fcntl

        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".hpsearch-data.lock", "a")
    except (ImportError, OSError):  # no fcntl (Windows) or no writable folder: go unlocked
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
