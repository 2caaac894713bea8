"""PyTorch Lightning as it is: the user's LightningModule (and LightningDataModule) trained by
their own `Trainer` loop: `training_step`, `configure_optimizers`, `configure_callbacks`, logging.

    model: {factory: "my_lit:LitClassifier", args: {hidden: 64}}
    data:  {factory: "my_lit:DigitsData"}        # or any hpsearch data set
    logged_metrics: {val_acc: "valid/acc"}       # only names that differ from ours

Constructors receive the keyword arguments they name: their own (`model_args` /
`dataset_args`, searched as `model_args.hidden`), hpsearch settings (`lr`, `batch_size`,
`dropout`...: the settings the module honours) and `config`, `input_shape`, `num_classes`.
hpsearch adds one callback that reads each epoch's logged metrics (`self.log(...)`), reports
them (pruning raises there) and stops a diverged run; it sets `max_epochs`, the seed, the
device and gradient clipping, and writes nothing (no logger, no checkpoints) unless
`trainer_args` asks for it. `pip install hpsearch[lightning]`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, TensorDataset

from hpsearch.config import TrainConfig, is_setting
from hpsearch.errors import ConfigError
from hpsearch.train.hooks import Reporter
from hpsearch.train.loop import data_loader
from hpsearch.train.registry import declared_honours, resolve_factory
from hpsearch.train.splits import DataModuleSource, DataSplits, Split, TensorSplit
from hpsearch.train.user_code import user_error

# Our metric names and, in order, the logged names read for each when `logged_metrics` does
# not say: `self.log("train_loss", ..., on_step=True, on_epoch=True)` logs `train_loss_epoch`.
DEFAULT_NAMES = {
    "train_loss": ("train_loss", "train_loss_epoch", "loss"),
    "train_acc": ("train_acc", "train_acc_epoch"),
    "val_loss": ("val_loss",),
    "val_acc": ("val_acc",),
}
_PASSED = ("config", "input_shape", "num_classes")  # constructor arguments hpsearch supplies
_NOT_PASSED = frozenset({"model", "model_args", "dataset", "dataset_args", "fit", "device",
                         "logged_metrics", "trainer_args", "data_dir"})


def constructor_settings(cls: type) -> set[str]:
    """The hpsearch settings a Lightning class's constructor takes by name: they reach it."""
    params = inspect.signature(cls.__init__).parameters
    return {name for name in params if is_setting(name) and name not in _NOT_PASSED}


def honoured_settings(model_cls: type, data_cls: type | None) -> set[str]:
    """What a LightningModule (and its data module) read: constructor settings, declared ones,
    and what hpsearch's Trainer sets itself (epochs, seed, gradient clipping)."""
    names = constructor_settings(model_cls) | set(declared_honours(model_cls))
    if data_cls is not None:
        names |= constructor_settings(data_cls) | set(declared_honours(data_cls))
    else:
        names.add("batch_size")  # hpsearch's own data: hpsearch builds the loaders
    return names | {"epochs", "seed", "grad_clip"}


def build_module(config: TrainConfig, data: Any, where: str = "model") -> Any:
    """The LightningModule `config.model`, built with the arguments its constructor names;
    `input_shape` and `num_classes` come from hpsearch's data, or from attributes of the
    same names on a LightningDataModule."""
    cls = resolve_factory(config.model, "model", where)
    if isinstance(data, DataSplits):
        extras = {"input_shape": tuple(data.input_shape), "num_classes": data.num_classes}
    else:
        extras = {n: getattr(data, n) for n in _PASSED[1:] if getattr(data, n, None) is not None}
    kwargs = _arguments(cls, config, config.model_args, extras, f"{where}: model_args")
    return _construct(f"LightningModule `{config.model}`", cls, kwargs)


def build_datamodule(config: TrainConfig, source: DataModuleSource, where: str = "dataset"):
    """The LightningDataModule, built with the arguments its constructor names."""
    kwargs = _arguments(source.cls, config, config.dataset_args, {}, f"{where}: dataset_args")
    return _construct(f"LightningDataModule `{source.name}`", source.cls, kwargs)


def _arguments(cls: type, config: TrainConfig, own: dict, extras: dict, where: str) -> dict:
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(own) - set(params))
    if unknown and not takes_any:
        raise ConfigError(
            f"{where}: {cls.__name__}.__init__ takes no argument {', '.join(unknown)}; fix: "
            f"use its arguments ({', '.join(n for n in params if n != 'self')}) or add them"
        )
    kwargs = dict(own)
    for name in params:
        if name in own or name == "self":
            continue
        if name == "config":
            kwargs[name] = config
        elif name in extras:
            kwargs[name] = extras[name]
        elif is_setting(name) and name not in _NOT_PASSED and getattr(config, name) is not None:
            kwargs[name] = getattr(config, name)  # None: the constructor's own default
    _check_required(cls, params, kwargs, where)
    return kwargs


def _check_required(cls: type, params, kwargs: dict, where: str) -> None:
    missing = [n for n, p in params.items() if n != "self" and n not in kwargs
               and p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        raise ConfigError(
            f"{where}: {cls.__name__}.__init__ needs {', '.join(missing)}, which nothing "
            f"gives; fix: set it in args (model_args / dataset_args), give it a default, or "
            f"(input_shape, num_classes) give the LightningDataModule attributes of that name"
        )


def _construct(what: str, cls: type, kwargs: dict) -> Any:
    try:
        return cls(**kwargs)
    except Exception as exc:
        raise user_error(what, exc) from exc


def fit_lightning(
    config: TrainConfig, data: DataSplits | DataModuleSource, device: torch.device,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[Any, list[dict]]:
    """Train with the module's own Trainer loop; return (module, history)."""
    import lightning.pytorch as pl

    with _quiet():
        pl.seed_everything(config.seed, workers=True, verbose=False)
        loaders = _fit_data(config, data, device)
        module = build_module(config, loaders.get("datamodule", data))
        reporter = Reporter(f"LightningModule `{config.model}`", on_epoch)
        trainer = _trainer(pl, config, device, [_callback(pl, config, reporter)])
        _run(reporter, lambda: trainer.fit(module, **loaders))
    return module, reporter.history


def fit_and_test_lightning(
    config: TrainConfig, data: DataSplits | DataModuleSource, device: torch.device
) -> tuple[Any, dict[str, float | None]]:
    """Train as `fit_lightning` does, then evaluate once on the test split with the module's
    validation_step: (module, {"loss", "acc"}) read through the val_* logged names."""
    import lightning.pytorch as pl

    module, _ = fit_lightning(config, data, device)
    with _quiet():
        trainer = _trainer(pl, config, device, [])
        loader = _test_loader(config, data, device)
        reporter = Reporter(f"LightningModule `{config.model}`", None)
        _run(reporter, lambda: trainer.validate(module, dataloaders=loader, verbose=False))
        logged = _logged(trainer)
    names = {**{k: v[0] for k, v in DEFAULT_NAMES.items()}, **config.logged_metrics}
    return module, {"loss": logged.get(names["val_loss"]), "acc": logged.get(names["val_acc"])}


def _trainer(pl, config: TrainConfig, device: torch.device, callbacks: list):
    accelerator, devices = ("cpu", 1) if device.type == "cpu" else ("gpu", [device.index or 0])
    settings = dict(
        max_epochs=config.epochs, accelerator=accelerator, devices=devices, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, gradient_clip_val=config.grad_clip, callbacks=callbacks,
        deterministic=False,
    )
    return pl.Trainer(**{**settings, **config.trainer_args})


def _run(reporter: Reporter, run: Callable[[], Any]) -> None:
    try:
        run()
    except BaseException as exc:
        if reporter.passes(exc):
            raise
        raise user_error(reporter.what, exc) from exc


def _callback(pl, config: TrainConfig, reporter: Reporter):
    names = config.logged_metrics

    class ReportEpochs(pl.Callback):
        """After each training epoch (its validation included): report the logged metrics."""

        def on_train_epoch_end(self, trainer, module) -> None:
            logged = _logged(trainer)
            record = {**_ours(logged, names, reporter.what), **_others(logged, names)}
            if trainer.optimizers:
                record["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
            reporter(trainer.current_epoch + 1, **record)

    return ReportEpochs()


def _logged(trainer) -> dict[str, float]:
    values = {}
    for name, value in trainer.callback_metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            values[name] = float(value.detach().cpu())
    return values


def _ours(logged: dict, names: dict, what: str) -> dict[str, float]:
    """train_loss, val_loss... read from the logged names; at least a validation metric."""
    found = {}
    for ours, candidates in DEFAULT_NAMES.items():
        for name in ([names[ours]] if ours in names else candidates):
            if name in logged:
                found[ours] = logged[name]
                break
    if "val_loss" not in found and "val_acc" not in found:
        shown = ", ".join(sorted(logged)) or "nothing"
        raise ConfigError(
            f"{what} logged no validation loss or accuracy this epoch (it logged: {shown}); "
            f"fix: self.log(\"val_loss\", ...) in validation_step, or map the names you log, "
            f"e.g. logged_metrics: {{val_loss: \"valid/loss\", val_acc: \"valid/acc\"}}"
        )
    return found


def _others(logged: dict, names: dict) -> dict[str, float]:
    mapped = set(names.values()) | {n for c in DEFAULT_NAMES.values() for n in c}
    return {name: value for name, value in logged.items() if name not in mapped}


def _fit_data(config: TrainConfig, data, device: torch.device) -> dict:
    if isinstance(data, DataModuleSource):
        return {"datamodule": build_datamodule(config, data)}
    shuffle = torch.Generator().manual_seed(config.seed)
    return {"train_dataloaders": _loader(data.train, config, device, shuffle),
            "val_dataloaders": _loader(data.val, config, device, None)}


def _test_loader(config: TrainConfig, data, device: torch.device):
    if isinstance(data, DataModuleSource):
        datamodule = build_datamodule(config, data)
        datamodule.prepare_data()
        datamodule.setup("test")
        return datamodule.test_dataloader()
    if data.test is None:
        raise ConfigError(f"data set `{config.dataset}` has no test split; fix: return a "
                          "`test` split from the data factory")
    return _loader(data.test, config, device, None)


def _loader(split: Split, config: TrainConfig, device: torch.device, shuffle) -> DataLoader:
    """hpsearch's splits as DataLoaders: tensors stay where they are (on the device)."""
    if isinstance(split, TensorSplit):
        split = TensorDataset(split.x, split.y)
        return DataLoader(split, batch_size=config.batch_size, shuffle=shuffle is not None,
                          generator=shuffle)
    return data_loader(split, config, device, shuffle)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's notices (GPU available, seed set, few DataLoader workers) are not ours to
    print: hpsearch reports trials itself. Warnings and errors that matter still raise."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            from lightning.fabric.utilities.warnings import PossibleUserWarning

            warnings.simplefilter("ignore", PossibleUserWarning)
            # Lightning's own deprecation notices about torch internals: not the user's code.
            warnings.filterwarnings("ignore", category=FutureWarning, module="lightning")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
