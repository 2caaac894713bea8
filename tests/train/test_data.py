"""Splits, normalisation, caching, the torchvision files and user data factories."""

from __future__ import annotations

import dataclasses
import gzip
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError, DataError
from hpsearch.train import DataSplits, TensorSplit, default_data_dir, load_data, sources
from hpsearch.train import data as data_module
from hpsearch.train.data import cache_dir, split_indices

CPU = torch.device("cpu")
DIGITS_OFFICIAL_TRAIN = 1797 - 359  # 20% held out once as digits' test split


def digits(**changes) -> DataSplits:
    return load_data(TrainConfig(**changes), CPU)


def test_digits_default_split_sizes():
    splits = digits()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1294, 144, 359)
    assert splits.input_shape == (1, 8, 8) and splits.num_classes == 10
    assert splits.train.x.dtype == torch.float32 and splits.train.y.dtype == torch.int64


def test_reference_fractions_on_digits():
    splits = digits(train_fraction=0.05, val_fraction=0.95)  # [001]: 5% train, 95% validation
    assert len(splits.train) == round(0.05 * DIGITS_OFFICIAL_TRAIN) == 72
    assert len(splits.val) == round(0.95 * DIGITS_OFFICIAL_TRAIN) == 1366


def test_train_and_validation_indices_are_disjoint_and_cover_the_fractions():
    config = TrainConfig(train_fraction=0.3, val_fraction=0.5)
    train, val = split_indices(1000, config)
    assert (len(train), len(val)) == (300, 500)
    assert not set(train.tolist()) & set(val.tolist())


def test_max_val_samples_caps_validation():
    assert len(digits(max_val_samples=50).val) == 50


def test_normalisation_uses_training_statistics_only():
    config = TrainConfig(train_fraction=0.05, val_fraction=0.95)
    splits = load_data(config, CPU)
    assert splits.train.x.mean().item() == pytest.approx(0, abs=1e-5)
    assert splits.train.x.std(unbiased=False).item() == pytest.approx(1, abs=1e-4)
    raw = sources.read_builtin("digits", default_data_dir(), default_data_dir())
    train_idx, val_idx = split_indices(DIGITS_OFFICIAL_TRAIN, config)
    train_raw = raw.train_x[train_idx].float()
    mean, std = train_raw.mean(), train_raw.std(unbiased=False)
    expected_val = (raw.train_x[val_idx].float() - mean) / std
    assert torch.allclose(splits.val.x, expected_val, atol=1e-5)
    assert abs(splits.val.x.mean().item()) > 1e-3  # validation is not re-centred on itself


def test_split_ignores_the_training_seed_and_follows_split_seed():
    base = digits()
    assert torch.equal(base.val.y, digits(seed=7).val.y)
    assert torch.equal(base.train.x, digits(seed=7).train.x)
    assert not torch.equal(base.val.y, digits(split_seed=1).val.y)


def test_loaded_splits_are_cached_per_process():
    assert digits(epochs=3) is digits(epochs=5, lr=0.1)  # training knobs do not reload


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train_fraction": 0.5, "val_fraction": 0.6},
         "train_fraction + val_fraction must be <= 1, got 0.5 + 0.6 = 1.1; fix: lower one of "
         "them (reference [001]: train_fraction=0.05, val_fraction=0.95)"),
        ({"val_fraction": 0.0}, "val_fraction must be > 0 and < 1, got 0.0; fix: e.g. val_fraction=0.1"),
        ({"train_fraction": 0.0},
         "train_fraction must be > 0 and < 1 (or none for all the rest), got 0.0; "
         "fix: e.g. train_fraction=0.05 as in the reference setting [001]"),
        ({"max_val_samples": 0}, "max_val_samples must be >= 1 or none, got 0; fix: set a positive cap or none"),
    ],
)
def test_bad_fractions_are_one_line_errors(changes, message):
    with pytest.raises(ConfigError) as error:
        digits(**changes)
    assert str(error.value) == message


def _read_files_again(monkeypatch) -> None:
    """Empty the per-process caches, so the test really reads the files."""
    monkeypatch.setattr(sources, "_RAW_CACHE", {})
    monkeypatch.setattr(data_module, "_SPLIT_CACHE", type(data_module._SPLIT_CACHE)())


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of `folder` and of everything under it: equal listings, nothing written.

    Compared before and after, not relied on permission errors: root may write anywhere.
    """
    paths = [folder, *sorted(folder.rglob("*"))]
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in paths}


def _reference_mnist(data_dir: Path | None) -> DataSplits:
    config = TrainConfig(dataset="mnist", data_dir=None if data_dir is None else str(data_dir),
                         train_fraction=0.05, val_fraction=0.95)
    return load_data(config, CPU)


def _assert_full_mnist(splits: DataSplits) -> None:
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3000, 57000, 10000)
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert splits.train.x.shape == (3000, 1, 28, 28)
    for split in (splits.train, splits.val, splits.test):
        assert split.y.min().item() == 0 and split.y.max().item() == 9


EXTRACTED = Path("MNIST") / "raw" / "train-images-idx3-ubyte"


@pytest.mark.parametrize("copy", ["readonly_mnist_dir", "mnist_gz_copy"])
def test_mnist_gz_files_are_extracted_in_the_cache_never_in_the_data_folder(
    copy, request, monkeypatch, tmp_path
):
    data_dir = request.getfixturevalue(copy)  # read-only or writable: the same rule
    _read_files_again(monkeypatch)
    before = _listing(data_dir)
    _assert_full_mnist(_reference_mnist(data_dir))
    assert _listing(data_dir) == before  # no extracted file, no lock file, no partial copy
    assert (tmp_path / "storage" / "data" / EXTRACTED).is_file()  # cache_dir(): ./storage/data


def test_cache_dir_env_moves_the_cache(readonly_mnist_dir, monkeypatch, tmp_path):
    _read_files_again(monkeypatch)
    monkeypatch.setenv(data_module.CACHE_DIR_ENV, str(tmp_path / "my-cache"))
    assert cache_dir() == (tmp_path / "my-cache").resolve()
    before = _listing(readonly_mnist_dir)
    _assert_full_mnist(_reference_mnist(readonly_mnist_dir))
    assert _listing(readonly_mnist_dir) == before
    assert (tmp_path / "my-cache" / EXTRACTED).is_file()
    assert not (tmp_path / "storage").exists()


def test_cache_dir_defaults_to_storage_data(tmp_path):
    assert cache_dir() == (tmp_path / "storage" / "data").resolve() == default_data_dir().resolve()


def test_extracted_mnist_is_read_in_place_and_left_untouched(mnist_gz_copy, monkeypatch, tmp_path):
    raw = mnist_gz_copy / "MNIST" / "raw"
    for archive in raw.glob("*.gz"):  # `gunzip -k`: the archives stay next to the files
        with gzip.open(archive) as packed:
            archive.with_suffix("").write_bytes(packed.read())
    _read_files_again(monkeypatch)
    before = _listing(mnist_gz_copy)
    _assert_full_mnist(_reference_mnist(mnist_gz_copy))
    assert _listing(mnist_gz_copy) == before
    assert not (tmp_path / "storage" / "data" / "MNIST").exists()  # nothing copied to the cache


def test_without_a_data_dir_the_cache_is_the_data_folder(mnist_gz_copy, monkeypatch, tmp_path):
    cache_raw = tmp_path / "storage" / "data" / "MNIST" / "raw"
    shutil.copytree(mnist_gz_copy / "MNIST" / "raw", cache_raw)
    _read_files_again(monkeypatch)
    _assert_full_mnist(_reference_mnist(None))
    assert (tmp_path / "storage" / "data" / EXTRACTED).is_file()  # extracted next to the .gz


@pytest.mark.parametrize(
    "absent",
    [("t10k-labels-idx1-ubyte.gz",), ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")],
)
def test_missing_archives_are_named_alone(absent, mnist_gz_copy, monkeypatch):
    raw = mnist_gz_copy / "MNIST" / "raw"
    for name in absent:
        (raw / name).unlink()
    monkeypatch.setenv(sources.NO_DOWNLOAD_ENV, "1")
    _read_files_again(monkeypatch)
    before = _listing(mnist_gz_copy)
    with pytest.raises(DataError) as error:
        _reference_mnist(mnist_gz_copy)
    assert str(error.value) == (
        f"mnist: data set not found in {raw} (download skipped: HPSEARCH_NO_DOWNLOAD=1); "
        f"fix: put {', '.join(absent)} there, or pass --data-dir / set HPSEARCH_DATA_DIR"
    )
    assert _listing(mnist_gz_copy) == before


def test_failed_download_names_only_the_missing_archive(mnist_gz_copy, monkeypatch):
    import torchvision.datasets

    def offline(self):
        raise RuntimeError("Error downloading t10k-images-idx3-ubyte.gz: no network")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    raw = mnist_gz_copy / "MNIST" / "raw"
    (raw / "t10k-images-idx3-ubyte.gz").unlink()
    _read_files_again(monkeypatch)
    with pytest.raises(DataError) as error:
        _reference_mnist(mnist_gz_copy)
    assert str(error.value) == (
        f"mnist: data set not found in {raw} (download failed: RuntimeError: Error downloading "
        f"t10k-images-idx3-ubyte.gz: no network); fix: put t10k-images-idx3-ubyte.gz there, "
        f"or pass --data-dir / set HPSEARCH_DATA_DIR"
    )


def test_missing_data_set_says_which_files_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.NO_DOWNLOAD_ENV, "1")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as error:
        load_data(TrainConfig(dataset="mnist", data_dir=str(empty)), CPU)
    assert str(error.value) == (
        f"mnist: data set not found in {empty}/MNIST/raw (download skipped: "
        f"HPSEARCH_NO_DOWNLOAD=1); fix: put train-images-idx3-ubyte.gz, "
        f"train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz "
        f"there, or pass --data-dir / set HPSEARCH_DATA_DIR"
    )


def test_failed_download_is_a_data_error_naming_the_cause(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(self):
        raise RuntimeError("Error downloading cifar-10-python.tar.gz:\nno network")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(DataError) as error:
        load_data(TrainConfig(dataset="cifar10"), CPU)
    assert str(error.value) == (
        f"cifar10: data set not found in {tmp_path / 'data'} (download failed: RuntimeError: "
        f"Error downloading cifar-10-python.tar.gz: no network); fix: put cifar-10-python.tar.gz "
        f"(or the extracted cifar-10-batches-py folder) there, or pass --data-dir / set HPSEARCH_DATA_DIR"
    )


def test_cifar_images_become_channels_first_and_normalised_per_channel(tmp_path, monkeypatch):
    import numpy as np
    import torchvision.datasets

    rng = np.random.default_rng(0)

    class FakeCifar:  # torchvision's layout: numpy (N, H, W, C) uint8, a list of labels
        classes = [str(i) for i in range(10)]

        def __init__(self, root, train, download):
            n = 500 if train else 100
            self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.data[..., 2] //= 4  # a darker blue channel: per-channel statistics differ
            self.targets = list(rng.integers(0, 10, n))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCifar)
    splits = load_data(TrainConfig(dataset="cifar10", data_dir=str(tmp_path)), CPU)
    assert splits.input_shape == (3, 32, 32) and splits.num_classes == 10
    assert (len(splits.train), len(splits.val), len(splits.test)) == (450, 50, 100)
    means = splits.train.x.mean(dim=(0, 2, 3))
    stds = splits.train.x.std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(means, torch.zeros(3), atol=1e-4)
    assert torch.allclose(stds, torch.ones(3), atol=1e-4)
    raw = sources.read_builtin("cifar10", tmp_path.resolve(), default_data_dir())
    assert raw.train_x.shape == (500, 3, 32, 32) and raw.train_x.dtype == torch.uint8
    assert raw.train_x[:, 2].max() < 64 < raw.train_x[:, :2].max()  # HWC -> CHW, not reshaped


# --- user data factories ------------------------------------------------------------------

def _blobs(n: int = 60):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    """A user module `hp_user_data` on sys.path; its factories read what the test sets."""
    (tmp_path / "hp_user_data.py").write_text(
        "RESULT = None\n"
        "def make(config, **kwargs):\n"
        "    return RESULT(**kwargs) if callable(RESULT) else RESULT\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import hp_user_data

    yield hp_user_data
    monkeypatch.delitem(__import__("sys").modules, "hp_user_data")


def _factory_config(**changes) -> TrainConfig:
    return TrainConfig(dataset="hp_user_data:make", **changes)


def test_factory_tensor_pairs_infer_classes_and_shape(factory_module):
    x, y = _blobs()
    factory_module.RESULT = {"train": (x[:40], y[:40]), "val": (x[40:], y[40:])}
    splits = load_data(_factory_config(), CPU)
    assert isinstance(splits.train, TensorSplit) and splits.test is None
    assert splits.num_classes == int(y.max()) + 1 and splits.input_shape == (5,)
    assert len(splits.train) == 40 and len(splits.val) == 20


def test_factory_receives_dataset_args_and_may_state_classes(factory_module):
    x, y = _blobs()

    def make(size):
        return {"train": TensorSplit(x[:size], y[:size]), "val": (x[size:], y[size:]),
                "test": (x[:5], y[:5]), "num_classes": 7, "input_shape": (5,)}

    factory_module.RESULT = make
    splits = load_data(_factory_config(dataset_args={"size": 30}), CPU)
    assert len(splits.train) == 30 and len(splits.test) == 5 and splits.num_classes == 7


def test_factory_integer_inputs_become_float(factory_module):
    x = torch.randint(0, 255, (10, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(10) % 2
    factory_module.RESULT = {"train": (x, y), "val": (x, y)}
    splits = load_data(_factory_config(), CPU)
    assert splits.train.x.dtype == torch.float32 and splits.input_shape == (1, 4, 4)


def test_factory_datasets_are_kept_and_shapes_inferred(factory_module):
    x, y = _blobs()
    factory_module.RESULT = {"train": TensorDataset(x[:40], y[:40]), "val": TensorDataset(x[40:], y[40:])}
    splits = load_data(_factory_config(), CPU)
    assert isinstance(splits.train, TensorDataset)
    assert splits.input_shape == (5,) and splits.num_classes == int(y.max()) + 1


def test_factory_may_return_data_splits(factory_module):
    x, y = _blobs()
    factory_module.RESULT = DataSplits(TensorSplit(x, y), TensorSplit(x, y), None, 3, (5,))
    assert load_data(_factory_config(), CPU).num_classes == 3


def test_factory_wrong_return_names_the_factory_and_what_was_expected(factory_module):
    factory_module.RESULT = [1, 2, 3]
    with pytest.raises(ConfigError) as error:
        load_data(_factory_config(), CPU, where="studies/d.yaml: base.dataset")
    assert str(error.value) == (
        "studies/d.yaml: base.dataset: data factory `hp_user_data:make` returned list; fix: "
        "return DataSplits or a dict with keys train, val (optional: test, num_classes, "
        "input_shape) whose splits are (x, y) tensors, TensorSplits or torch Datasets"
    )


def test_factory_missing_validation_split_is_rejected(factory_module):
    factory_module.RESULT = {"train": _blobs()}
    with pytest.raises(ConfigError, match=r"returned \['train'\]; fix: return DataSplits"):
        load_data(_factory_config(), CPU)


def test_factory_labels_must_be_integers(factory_module):
    x, _ = _blobs()
    factory_module.RESULT = {"train": (x, x[:, 0]), "val": (x, x[:, 0])}
    with pytest.raises(ConfigError, match="y must hold one integer class label per row of x"):
        load_data(_factory_config(), CPU)


def test_registered_dataset_name(monkeypatch):
    from hpsearch.train import registry

    monkeypatch.setattr(registry, "_REGISTRY", {"model": {}, "dataset": {}})
    x, y = _blobs()

    @registry.dataset("toy")
    def toy(config):
        return {"train": (x, y), "val": (x, y)}

    assert len(load_data(dataclasses.replace(TrainConfig(), dataset="toy"), CPU).train) == 60
