"""Schema of the controlled Gaussian experiments (``configs/toy/*.yaml``).

Every default is visible below (``python -c "from bgrl_werank.toy.config import ToyConfig;
print(ToyConfig())"``); a YAML file states only what differs. Loading reuses the strict machinery
of :mod:`bgrl_werank.config` (unknown keys, wrong types and ``--set`` overrides), and
:func:`validate` adds the range checks. Every :class:`ConfigError` names the key.

Each figure trains every model twice from the same initialisation, data and noise stream: once
without WERank (alpha = 0) and once with ``werank.alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


from ..config import (COEFF, SEED, THREADS, Bounds, ConfigError, build_schema, check_ranges, closed, open_low,
                      read_yaml, save_config, to_dict)
from .model import INITS

LOSSES = ("vicreg", "infonce", "ema")
OPTIMIZERS = ("sgd", "adamw")
PREDICTORS = ("none", "linear")


@dataclass
class DataConfig:
    """The whitened Gaussian and its two noisy views (see :mod:`bgrl_werank.toy.data`)."""

    num_points: int = 1000
    dim: int = 16
    noise_dims: int = 8  # the last noise_dims coordinates get noise of variance k
    k: float = 0.1  # augmentation strength
    whiten_noise: bool = True  # each noise draw has second moment exactly k·I on its block
    resample_noise: bool = True  # fresh noise for both views every epoch
    seed: int = 0  # the data points (the noise stream follows the run's seed)


@dataclass
class ModelConfig:
    """L bias-free width×width linear layers (width = data.dim)."""

    num_layers: int = 2
    init: str = "gaussian"  # gaussian: N(0, (init_scale/sqrt(dim))²) entries; orthogonal: init_scale·Q
    init_scale: float = 0.1


@dataclass
class OptimConfig:
    """Full-batch optimiser: plain SGD (no momentum) or AdamW."""

    name: str = "sgd"
    lr: float = 0.1
    weight_decay: float = 0.0


@dataclass
class VICRegConfig:
    invariance: float = 10.0
    variance: float = 10.0
    covariance: float = 1.0
    eps: float = 1e-4
    optim: OptimConfig = field(default_factory=lambda: OptimConfig("sgd", 0.1, 0.0))


@dataclass
class InfoNCEConfig:
    temperature: float = 0.5
    optim: OptimConfig = field(default_factory=lambda: OptimConfig("sgd", 1.0, 0.0))


@dataclass
class EMAConfig:
    """BYOL-like student–teacher: online encoder (+ predictor), teacher = EMA of the online encoder."""

    momentum: float = 0.995
    predictor: str = "linear"  # none | linear (a bias-free width×width map, initialised like the encoder layers)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig("adamw", 0.01, 3e-4))


@dataclass
class WERankConfig:
    alpha: float = 0.1  # coefficient of Σ_l ‖W_l W_lᵀ − I‖_F on the (online) encoder's layers


@dataclass
class TrainConfig:
    epochs: int = 1000  # one full-batch step per epoch
    record_every: int = 10  # spectra are recorded at epoch 0, every record_every epochs, and at the end
    progress: str = "auto"  # auto (a bar on a terminal only) | bar | none


@dataclass
class SweepConfig:
    """The grids of Figures 2 and 3."""

    num_layers: list[int] = field(default_factory=lambda: [1, 2, 3, 4])  # Figure 2
    k: list[float] = field(default_factory=lambda: [0.01, 0.1, 0.5, 1.0, 2.0])  # Figure 3
    losses: list[str] = field(default_factory=lambda: ["ema", "infonce", "vicreg"])  # Figure 3 panels


@dataclass
class ToyConfig:
    name: str = "toy"
    seed: int = 0  # network initialisation and the noise stream
    threads: int = 1  # torch threads
    out_dir: str = "runs/toy"  # run folder: <out_dir>/<name>/<timestamp>/ unless --out is given
    loss: str = "vicreg"  # vicreg | infonce | ema (Figures 1, 2; Figure 3 uses sweep.losses)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    vicreg: VICRegConfig = field(default_factory=VICRegConfig)
    infonce: InfoNCEConfig = field(default_factory=InfoNCEConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    werank: WERankConfig = field(default_factory=WERankConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)


# Every numeric key's range (see bgrl_werank.config.RANGES for the notation and the shared bounds).
# Seeds: SEED holds the noise stream's seed + NOISE_SEED_OFFSET (1 000 003) as well.
TOY_LR = open_low(0.0, 100.0)  # full-batch SGD / AdamW steps: the shipped rates are 0.01 to 1
TOY_WEIGHT_DECAY = closed(0.0, 100.0)
# the paper's deepest linear network has 4 layers; Figure 1 draws a panel per layer (64: half a
# minute; 1000 layers never finish drawing)
MAX_DEPTH = closed(1, 64)
NOISE_K = closed(0.0, 1e6)  # a noise variance: 1e6 keeps squared embeddings finite in float32
TOY_RANGES: dict[str, Bounds] = {
    "seed": SEED,
    "threads": THREADS,
    # full batch: the data and both views are dense N x dim float32 tensors (10^6 x 1024: 4 GiB each;
    # the paper uses 1000 x 16); dim: every record also takes an SVD of every dim x dim layer
    "data.num_points": closed(2, 1_000_000),
    "data.dim": closed(1, 1024),
    "data.noise_dims": closed(0, 1024),  # and <= data.dim (checked below)
    "data.k": NOISE_K,
    "data.seed": SEED,
    "model.num_layers": MAX_DEPTH,
    "model.init_scale": open_low(0.0, 100.0),  # 0 would start from all-zero weights (no gradient)
    "vicreg.invariance": COEFF,
    "vicreg.variance": COEFF,
    "vicreg.covariance": COEFF,
    "vicreg.eps": open_low(0.0, 1.0),  # in sqrt(var + eps), to keep it differentiable at 0 variance
    "vicreg.optim.lr": TOY_LR,
    "vicreg.optim.weight_decay": TOY_WEIGHT_DECAY,
    # temperature: below 1e-6 the logits overflow float32, above 10^3 the loss is flat
    "infonce.temperature": closed(1e-6, 1e3),
    "infonce.optim.lr": TOY_LR,
    "infonce.optim.weight_decay": TOY_WEIGHT_DECAY,
    "ema.momentum": closed(0.0, 1.0),  # the EMA weight of the old teacher
    "ema.optim.lr": TOY_LR,
    "ema.optim.weight_decay": TOY_WEIGHT_DECAY,
    "werank.alpha": COEFF,
    # one full-batch step per epoch; the paper's longest runs are 10 000 epochs, and every record is
    # kept in memory and in spectra.json
    "train.epochs": closed(1, 1_000_000),
    "train.record_every": closed(1, 1_000_000),
    "sweep.num_layers.*": MAX_DEPTH,
    "sweep.k.*": NOISE_K,
}


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def validate(cfg: ToyConfig) -> ToyConfig:
    """Range checks that types cannot express; returns ``cfg`` or raises ConfigError naming the key.

    Every numeric key is checked against :data:`TOY_RANGES`; the checks here add choices, list
    lengths and conditions between keys.
    """
    check_ranges(cfg, TOY_RANGES)
    d = cfg.data
    _check(d.num_points > d.dim, f"data.num_points must be > data.dim ({d.dim}) to whiten, got {d.num_points}")
    _check(d.noise_dims <= d.dim, f"data.noise_dims must be in [0, data.dim={d.dim}], got {d.noise_dims}")
    if d.whiten_noise and d.noise_dims > 0:
        _check(d.num_points > d.noise_dims, f"data.num_points must be > data.noise_dims to whiten the noise, got {d.num_points}")
    m = cfg.model
    _check(m.init in INITS, f"model.init must be one of {', '.join(INITS)}, got {m.init!r}")
    _check(cfg.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got {cfg.loss!r}")
    for key in ("vicreg", "infonce", "ema"):
        name = getattr(cfg, key).optim.name
        _check(name in OPTIMIZERS, f"{key}.optim.name must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    e = cfg.ema
    _check(e.predictor in PREDICTORS, f"ema.predictor must be one of {', '.join(PREDICTORS)}, got {e.predictor!r}")
    t = cfg.train
    _check(t.progress in ("auto", "bar", "none"), f"train.progress must be auto, bar or none, got {t.progress!r}")
    s = cfg.sweep
    _check(len(s.num_layers) > 0, "sweep.num_layers is empty; give at least one depth, e.g. [1, 2, 3, 4]")
    _check(len(s.k) > 0, "sweep.k is empty; give at least one noise strength, e.g. [0.1, 1.0]")
    _check(len(s.losses) > 0, "sweep.losses is empty; give at least one of " + ", ".join(LOSSES))
    for i, name in enumerate(s.losses):
        _check(name in LOSSES, f"sweep.losses.{i} must be one of {', '.join(LOSSES)}, got {name!r}")
    return cfg


def build_config(data: dict | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ToyConfig:
    """Defaults ← ``data`` (a partial nested mapping) ← ``overrides``; then type- and range-checked."""
    return build_schema(ToyConfig, validate, data, overrides)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ToyConfig:
    """Load a YAML config (only defaults when ``path`` is None) and apply ``--set`` overrides."""
    data = read_yaml(path) if path is not None else {}
    return build_config(data, overrides)



def optim_for(cfg: ToyConfig, loss: str) -> OptimConfig:
    """The optimiser settings of one loss."""
    return {"vicreg": cfg.vicreg.optim, "infonce": cfg.infonce.optim, "ema": cfg.ema.optim}[loss]


__all__ = ["ToyConfig", "ConfigError", "build_config", "load_config", "save_config", "validate", "optim_for",
           "LOSSES", "to_dict"]
