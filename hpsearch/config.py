"""The training configuration: every knob hpsearch can set, with its default, unit and source.

Precedence (nanoGPT's configurator, STYLE.md): defaults < study `base` < sampled parameters
< `--set key=value`. Each layer is a plain dict applied by `resolve_config`; an unknown key
or a value of the wrong type is a `ConfigError`, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from hpsearch.errors import ConfigError

# Settings that change where or how fast a run happens but not what it computes: they are not
# part of a study's fixed settings, so a study may be resumed on another device or data folder.
RUNTIME_ONLY_KEYS = frozenset({"device", "data_dir", "num_workers", "pin_memory",
                               "persistent_workers"})


def what_it_computes(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a configuration computes: where or how fast it runs (RUNTIME_ONLY_KEYS) left out.
    Two configurations equal here train the same model."""
    return {k: v for k, v in config.items() if k not in RUNTIME_ONLY_KEYS}


@dataclass(frozen=True)
class TrainConfig:
    """One fully resolved training run. Defaults are PROTOCOL.md's reference setting [001]."""

    # --- data -------------------------------------------------------------------------------
    dataset: str = "digits"  # digits | mnist | fashion_mnist | cifar10 | registered name | "pkg.mod:fn"
    dataset_args: dict = field(default_factory=dict)  # keyword arguments for a data factory
    data_dir: str | None = None  # None: --data-dir, $HPSEARCH_DATA_DIR, then storage/data
    val_fraction: float = 0.1  # share of the official train split held out for validation
    train_fraction: float | None = None  # share of the official train split trained on;
    # None = everything not held out. Reference [001]: 0.05 with validation = the other 95%.
    max_val_samples: int | None = None  # cap on validation size (speed); None = no cap
    # Per-epoch validation on a fixed stratified subset of this many samples (0: the whole
    # split); the peak epoch's model is then validated on the whole split. 10,000 keeps the
    # standard error at 0.22 points at 95% accuracy (train/validation.py).
    val_subset: int = 10_000
    split_seed: int = 0  # fixed seed of the train/validation carving: same split every trial

    # A torch `Dataset` split streams through a DataLoader; tensor splits need none of these.
    num_workers: int = 0  # DataLoader worker processes (0: load in the training process)
    pin_memory: bool = False  # page-locked host batches: faster, asynchronous copies to CUDA
    persistent_workers: bool = False  # keep the workers between epochs (needs num_workers > 0)
    augment: str = "none"  # none | noise | flip | crop | flip_crop; training batches only [001, 003]
    noise_std: float = 0.1  # std of Gaussian noise augmentation, in normalised units [001]

    # --- model ------------------------------------------------------------------------------
    model: str = "mlp"  # mlp | cnn | torchvision:NAME | registered name | "pkg.mod:fn"
    model_args: dict = field(default_factory=dict)  # keyword arguments for a model factory
    depth: int = 3  # MLP hidden layers; reference: 3 linear layers of 100 outputs [001]
    width: int = 100  # MLP hidden width [001]
    norm: str = "none"  # none | batch | layer; BatchNorm1d / LayerNorm in the MLP [001]
    dropout: float = 0.0  # dropout p after hidden FC layers (MLP) or in the CNN head [001]
    conv_blocks: int = 3  # CNN: 2, 3 or 4 Conv2D blocks [000]
    conv_width: int = 64  # CNN first-block channels, doubled per block: 32, 48 or 64 [000]
    first_pool: bool = True  # CNN: False drops the MaxPool of the first block [000]
    conv_norm: str = "none"  # none | batch: Conv2D -> BatchNorm -> ReLU [000]
    head: str = "linear"  # linear | mlp: FC(features, 128) + ReLU + Linear(128, classes) [000]

    # --- loss ---------------------------------------------------------------------------------
    loss: str = "cross_entropy"  # cross_entropy | nll | bce | mse | l1 | "pkg.mod:fn_or_class"
    loss_args: dict = field(default_factory=dict)  # keyword arguments for an import-path loss

    # --- optimisation -----------------------------------------------------------------------
    # Optimizer settings left at None keep torch's own default for the chosen optimizer
    # (SGD and RMSprop: momentum 0; Adam: betas 0.9/0.999; AdamW: weight decay 0.01).
    optimizer: str = "adam"  # sgd | adam | adamw | rmsprop | "torch.optim:Adadelta"; Adam(1e-3) [000]
    optimizer_args: dict = field(default_factory=dict)  # further optimizer keyword arguments
    lr: float = 1e-3  # peak learning rate; Adam start 1e-3, SGD start 0.1 [000]
    momentum: float | None = None  # SGD / RMSprop momentum; the SGD start is 0.9 [000]
    nesterov: bool = False  # SGD Nesterov momentum
    beta1: float | None = None  # Adam/AdamW first-moment decay (torch: 0.9)
    beta2: float | None = None  # Adam/AdamW second-moment decay (torch: 0.999)
    weight_decay: float | None = None  # L2 / decoupled (AdamW) decay; 1e-4 typical [003]
    l1: float = 0.0  # L1 penalty strength added to the loss: l1 * sum|w| over weights [001]
    label_smoothing: float = 0.0  # epsilon; 0.1 on ImageNet [003]
    batch_size: int = 300  # samples per step; reference 300 [001]
    epochs: int = 20  # passes over the training split
    patience: int = 0  # stop after this many epochs without a new validation peak; 0: never
    grad_clip: float | None = None  # max global grad norm; None = no clipping

    # --- schedule ---------------------------------------------------------------------------
    scheduler: str = "none"  # none | step | cosine | exponential | polynomial [003]
    step_size: int = 30  # epochs between step decays; ResNet50: /10 every 30 epochs [003]
    gamma: float = 0.1  # step: factor per step; exponential: factor per epoch
    power: float = 1.0  # polynomial decay exponent
    warmup_epochs: float = 0.0  # linear warmup from 0 to lr, in epochs; e.g. 5 [003]

    # --- the user's own training -------------------------------------------------------------
    fit: str | None = None  # "pkg.mod:fn": fn(config, data, device, report) trains instead of ours
    logged_metrics: dict = field(default_factory=dict)  # Lightning: our name -> the logged name
    trainer_args: dict = field(default_factory=dict)  # Lightning: more Trainer keyword arguments

    # --- run --------------------------------------------------------------------------------
    seed: int = 0  # weight init and batch order (not bit-exact on GPU [004])
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy, stored with every trial so a run can be reproduced."""
        return dataclasses.asdict(self)

    def fixed_settings(self, exclude: Iterable[str] = ()) -> dict[str, Any]:
        """The settings that define an experiment: all but runtime-only and `exclude` keys."""
        skip = RUNTIME_ONLY_KEYS | set(exclude)
        return {k: v for k, v in self.to_dict().items() if k not in skip}


# Settings that take one of a fixed set of names. `model` and `dataset` are open: they also
# accept registered names and import paths, checked when the model or data set is built.
CHOICES: dict[str, tuple[str, ...]] = {
    "augment": ("none", "noise", "flip", "crop", "flip_crop"),
    "norm": ("none", "batch", "layer"),
    "conv_norm": ("none", "batch"),
    "head": ("linear", "mlp"),
    "scheduler": ("none", "step", "cosine", "exponential", "polynomial"),
}
# Settings that take a built-in name or an import path "pkg.mod:attr" (checked when built).
NAMES_OR_PATHS: dict[str, tuple[str, ...]] = {
    "optimizer": ("sgd", "adam", "adamw", "rmsprop"),
    "loss": ("cross_entropy", "nll", "bce", "mse", "l1"),
}

@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: low..high, each end open or closed."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # True: low itself is refused (lr > 0)
    high_open: bool = False  # True: high itself is refused (dropout < 1)

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def text(self, name: str) -> str:
        """`0 <= dropout < 1`."""
        low = "" if self.low == -math.inf else f"{_number(self.low)} {'<' if self.low_open else '<='} "
        high = "" if self.high == math.inf else f" {'<' if self.high_open else '<='} {_number(self.high)}"
        return f"{low}{name}{high}"


def _number(value: float) -> str:
    return f"{value:g}" if not float(value).is_integer() else f"{int(value):,}".replace(",", "_")


_POSITIVE = Range(0, low_open=True)
_NON_NEGATIVE = Range(0)
_FRACTION = Range(0, 1, high_open=True)  # a probability or share: 1 would remove everything
# What each numeric setting may hold. The upper bounds catch typos that would run forever
# or allocate without end (epochs 1e23, a width of 1e9), far above any real run.
RANGES: dict[str, Range] = {
    "val_fraction": Range(0, 1, low_open=True, high_open=True),
    "train_fraction": Range(0, 1, low_open=True),
    "max_val_samples": Range(1),
    "val_subset": _NON_NEGATIVE,
    "num_workers": Range(0, 256),
    "noise_std": _NON_NEGATIVE,
    "depth": Range(1, 1_000),
    "width": Range(1, 65_536),  # 3 layers of 65,536: 8.6e9 weights, 34 GB in float32
    "dropout": _FRACTION,
    "conv_blocks": Range(1, 16),
    "conv_width": Range(1, 65_536),
    "lr": _POSITIVE,  # no upper bound: a rate that diverges is a result (pruned: diverged)
    "momentum": _FRACTION,
    "beta1": _FRACTION,
    "beta2": _FRACTION,
    "weight_decay": _NON_NEGATIVE,
    "l1": _NON_NEGATIVE,
    "label_smoothing": _FRACTION,
    "batch_size": Range(1, 10_000_000),
    "epochs": Range(1, 100_000),
    "patience": Range(0, 100_000),
    "grad_clip": _POSITIVE,
    "step_size": Range(1, 100_000),
    "gamma": _POSITIVE,
    "power": _POSITIVE,
    "warmup_epochs": Range(0, 100_000),
    "seed": Range(0, 2**63 - 1),
    "split_seed": Range(0, 2**63 - 1),
}


# Settings the model reads, not the training loop: the built-in MLP and CNN read them; a
# user's model receives them in `config` and honours those it declares (train/contract.py).
MODEL_SETTINGS = frozenset({
    "depth", "width", "norm", "dropout", "conv_blocks", "conv_width", "first_pool",
    "conv_norm", "head",
})

FIELD_TYPES: dict[str, Any] = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)
# Dict-valued settings whose keys may be addressed as `model_args.hidden=64`.
DICT_FIELDS = frozenset(name for name, hint in _HINTS.items() if hint is dict)


def setting_notes() -> dict[str, str]:
    """Each setting's meaning, unit and source, read from TrainConfig's own comments (one
    source for the code and `hpsearch settings`): the comment on its line, the comment lines
    right under it, and a comment block right above a field whose line has none (or a block
    that opens a section or follows a blank line, put before its own comment)."""
    notes: dict[str, list[str]] = {}
    block: list[str] = []  # comment lines not yet given to a field
    last: str | None = None  # the field the block would continue
    for line in inspect.getsource(TrainConfig).splitlines():
        text = line.strip()
        if text.startswith("# ---") or not text:
            block, last = [], None  # a section or a blank line: what follows is the next one's
        elif text.startswith("#"):
            block.append(text.lstrip("# "))
        elif (match := _FIELD.match(text)) is not None:
            name, comment = match.group(1), match.group(2)
            if last is not None and block and comment:
                notes[last] += block  # the lines under the previous field continued it
                block = []
            notes[name] = [*block, *([comment] if comment else [])]
            block, last = [], name
    return {name: " ".join(lines) for name, lines in notes.items()}


_FIELD = re.compile(r"^(\w+): [^#]*?(?:#\s*(.*))?$")


def field_names() -> list[str]:
    """Every setting a study file, a search space or `--set` may name."""
    return list(_HINTS)


def is_setting(name: str) -> bool:
    """True for a TrainConfig field or an entry of a dict field (`model_args.hidden`)."""
    head, _, rest = name.partition(".")
    return name in _HINTS or (bool(rest) and head in DICT_FIELDS)


def base_type(name: str) -> type:
    """The Python type a setting holds, `Optional` stripped: int, float, bool, str or dict."""
    if "." in name:
        return object  # entries of model_args / dataset_args take any YAML value
    hint = _HINTS[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if isinstance(hint, types.UnionType) else hint


def is_optional(name: str) -> bool:
    """True when a setting accepts None (`grad_clip`, `train_fraction`...)."""
    return "." not in name and type(None) in typing.get_args(_HINTS[name])


def unknown_setting_error(name: str, where: str) -> ConfigError:
    """The one message for a name that is no setting, with the closest known names."""
    close = difflib.get_close_matches(name, field_names(), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "run `hpsearch settings` to list them"
    return ConfigError(f"{where}: unknown setting `{name}`; fix: {hint}")


def coerce_value(name: str, value: Any, where: str) -> Any:
    """Check (and losslessly convert) one value for setting `name`; raise ConfigError if wrong."""
    if not is_setting(name):
        raise unknown_setting_error(name, where)
    if value is None and (is_optional(name) or "." in name):
        return None
    want = base_type(name)
    converted = _convert(value, want)
    if converted is _INVALID:
        kind = "number" if want is float else want.__name__
        raise ConfigError(
            f"{where}: `{name}` must be {_article(kind)} {kind}, got {value!r}; "
            f"fix: write {_article(kind)} {kind} for `{name}`"
        )
    bounds = RANGES.get(name)
    if bounds is not None and converted is not None and not bounds.holds(converted):
        raise ConfigError(
            f"{where}: `{name}` must be {bounds.text(name)}, got {value!r}; "
            f"fix: give `{name}` a value in that range (`hpsearch settings` lists each range)"
        )
    allowed = CHOICES.get(name)
    if allowed is not None and converted not in allowed:
        raise ConfigError(
            f"{where}: `{name}` must be one of {', '.join(allowed)}, got {value!r}; "
            f"fix: pick one of {', '.join(allowed)}"
        )
    named = NAMES_OR_PATHS.get(name)
    if named is not None and converted not in named and ":" not in str(converted):
        raise ConfigError(
            f"{where}: `{name}` must be one of {', '.join(named)} or an import path "
            f"package.module:name, got {value!r}; fix: pick one of {', '.join(named)}"
        )
    return converted


_INVALID = object()


def _convert(value: Any, want: type) -> Any:
    if want is object:
        return value
    if want is bool:
        return value if isinstance(value, bool) else _INVALID
    if want is int:
        if isinstance(value, bool):
            return _INVALID
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) else _INVALID
    if want is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _INVALID
        return float(value) if math.isfinite(value) else _INVALID
    if want is dict:
        return dict(value) if isinstance(value, Mapping) else _INVALID
    return value if isinstance(value, want) else _INVALID


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def resolve_config(*layers: tuple[str, Mapping[str, Any]]) -> TrainConfig:
    """Apply `(source, settings)` layers in order over the defaults and return the result.

    `source` names where a layer came from (a file and field, `--set`) for error messages.
    Dotted keys (`model_args.hidden`) update one entry of a dict setting.
    """
    values = TrainConfig().to_dict()
    for source, settings in layers:
        for name, value in settings.items():
            value = coerce_value(name, value, source)
            head, _, key = name.partition(".")
            if key:
                values[head] = {**values[head], key: value}
            else:
                values[name] = value
    return TrainConfig(**values)


def parse_set_options(items: Iterable[str]) -> dict[str, Any]:
    """Parse `--set key=value` strings into typed settings (YAML scalars: 1e-3, true, none)."""
    parsed: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--set {item}: expected key=value; fix: write e.g. --set lr=3e-4")
        value = parse_scalar(text.strip())
        if is_setting(name) and base_type(name) is str and value is not None:
            value = text.strip()  # `--set model=mypkg.nets:build` stays a string
        parsed[name] = coerce_value(name, value, f"--set {item}")
    return parsed


def parse_scalar(text: str) -> Any:
    """Read one scalar the way study files do (numbers like `1e-3`, booleans, `none`)."""
    from hpsearch.spec.yaml_loader import load_yaml_text  # one YAML dialect everywhere

    if text.lower() in {"none", "null", "~", ""}:
        return None
    try:
        return load_yaml_text(text)
    except Exception:  # not valid YAML: keep the raw text (e.g. "pkg.mod:fn")
        return text
