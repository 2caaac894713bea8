"""What a model and its training honour: the settings that change anything for them.

A study may only search (or `--set`) what reaches the training: searching `dropout` for a
model that never reads `config.dropout` would run trials that differ in name only. Who
reads what:

- hpsearch's loop applies the training settings (optimizer, lr, batch size, L1, label
  smoothing for cross-entropy, augmentation, schedule...) to any model it trains.
- The model settings (MODEL_SETTINGS: depth, width, norm, dropout, conv_*...) reach the
  built-in MLP and CNN; a user's factory gets them in `config` and honours those it declares
  (`@hpsearch.declare(honours=["dropout"])`, or `build_net.honours = ["dropout"]`); a
  torchvision model none.
- A fit hook or a LightningModule trains itself: it honours what it declares, and a
  Lightning class also what its constructor takes by name (`lr`, `batch_size`...).
- The model's own knobs (`model_args.*`), the data settings and the run settings (epochs,
  seed, device) always apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpsearch.config import MODEL_SETTINGS, TrainConfig, field_names
from hpsearch.train import lightning
from hpsearch.train.models import is_lightning_data
from hpsearch.train.registry import declared_honours, load_import_path, resolve_factory
from hpsearch.train.sources import BUILTIN_DATASETS
from hpsearch.train.trainers import FIT_HOOK, HPSEARCH, LIGHTNING, trainer_of

# Settings that reach every run whoever trains: what to train on, for how long, where.
ALWAYS = frozenset({
    "model", "model_args", "dataset", "dataset_args", "data_dir", "val_fraction",
    "train_fraction", "max_val_samples", "split_seed", "num_workers", "pin_memory",
    "persistent_workers", "epochs", "seed", "device", "fit", "logged_metrics", "trainer_args",
})
# The training settings hpsearch's loop applies to whatever model it trains.
LOOP_SETTINGS = frozenset(field_names()) - MODEL_SETTINGS - ALWAYS
_BUILTIN_MODEL_SETTINGS = {
    "mlp": frozenset({"depth", "width", "norm", "dropout"}),
    "cnn": frozenset({"conv_blocks", "conv_width", "first_pool", "conv_norm", "head", "dropout"}),
}


@dataclass(frozen=True)
class Contract:
    """The settings one configuration's model and trainer read."""

    subject: str  # "model `my_nets:build_net`", "fit hook `my_gan:fit`"...
    trainer: str  # hpsearch | fit hook | lightning
    honours: frozenset[str]
    fix: str  # how the subject declares a setting it reads
    user_code: bool = True  # False for hpsearch's own models: they read, rather than declare

    def honoured(self, setting: str) -> bool:
        head = setting.partition(".")[0]
        return head in ALWAYS or head in self.honours

    def refusal(self, setting: str) -> str:
        """Why searching `setting` would change nothing, and the fix."""
        shown = self.honours & MODEL_SETTINGS if self.trainer == HPSEARCH else self.honours
        listed = ", ".join(sorted(shown - ALWAYS)) or "none"
        if not self.user_code:
            return (f"{self.subject} does not read `{setting}` (it reads: {listed}), so trials "
                    f"would differ in name only; fix: {self.fix}")
        return (f"{self.subject} does not declare that it reads `{setting}` (it declares: "
                f"{listed}), so trials would differ in name only; fix: {self.fix}")


def contract_for(config: TrainConfig, where: str = "model") -> Contract:
    """What `config`'s model and trainer honour."""
    kind = trainer_of(config, where)
    if kind == FIT_HOOK:
        hook = load_import_path(config.fit, "fit hook", "fit")
        name = config.fit.rpartition(":")[2]
        return Contract(f"fit hook `{config.fit}`", kind, frozenset(declared_honours(hook)),
                        _declare_fix(name))
    if kind == LIGHTNING:
        return _lightning_contract(config, where)
    builtin = config.model in _BUILTIN_MODEL_SETTINGS or config.model.startswith("torchvision:")
    fix = ("do not search or set it for this model" if builtin
           else _declare_fix(config.model.rpartition(":")[2]))
    return Contract(f"model `{config.model}`", HPSEARCH,
                    _model_settings(config, where) | _loop_settings(config), fix,
                    user_code=not builtin)


def _model_settings(config: TrainConfig, where: str) -> frozenset[str]:
    if config.model in _BUILTIN_MODEL_SETTINGS:
        return _BUILTIN_MODEL_SETTINGS[config.model]
    if config.model.startswith("torchvision:"):
        return frozenset()
    factory = resolve_factory(config.model, "model", where)
    return frozenset(declared_honours(factory))


def _loop_settings(config: TrainConfig) -> frozenset[str]:
    # Label smoothing is a cross-entropy option: other losses ignore it.
    return LOOP_SETTINGS - (set() if config.loss == "cross_entropy" else {"label_smoothing"})


def _lightning_contract(config: TrainConfig, where: str) -> Contract:
    module = resolve_factory(config.model, "model", where)
    data = None
    if config.dataset not in BUILTIN_DATASETS:
        target = resolve_factory(config.dataset, "dataset", "dataset")
        data = target if is_lightning_data(target) else None
    honours = lightning.honoured_settings(module, data)
    fix = (f"take it as an argument of {module.__name__}.__init__ (`def __init__(self, "
           f"..., lr=1e-3)`) or declare it (@hpsearch.declare(honours=[...]))")
    return Contract(f"LightningModule `{config.model}`", LIGHTNING, frozenset(honours), fix)


def _declare_fix(name: str) -> str:
    return (f"read it from config in {name} and declare it with "
            f"@hpsearch.declare(honours=[...]) (or {name}.honours = [...]), or do not search it")
