"""Configuration: one typed schema (dataclasses), YAML loading, ``--set`` overrides, validation.

Every default lives in the dataclasses below, so ``python -c "from bgrl_werank.config import Config;
print(Config())"`` shows the whole schema. A YAML file only states what differs from the defaults.
Loading is strict: an unknown key, a wrong type or an out-of-range value raises :class:`ConfigError`
whose one-line message names the key, the bad value and what is accepted.

Overrides use dotted paths, with list indices as numbers::

    --set werank.enabled=false --set seed=3 --set augment.0.edge_drop_p=0.3 --set model.layer_sizes=[256,128]

Values are parsed as YAML (``true``, ``[1, 2]``, ``null``); numbers such as ``1e-3`` are accepted
for float fields even though YAML 1.1 would read them as strings.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml


class ConfigError(ValueError):
    """A configuration problem, with a one-line message naming the key and the fix."""


# --------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------


@dataclass
class CSBMConfig:
    """Contextual stochastic block model (the synthetic ``csbm`` dataset)."""

    num_nodes: int = 1000
    num_classes: int = 4
    avg_degree: float = 10.0
    num_features: int = 64
    homophily: float = 0.8
    signal: float = 1.0
    feature_density: float = 1.0
    seed: int = 0


@dataclass
class DataConfig:
    """Which graph to load and how to preprocess it."""

    name: str = "cora"
    root: Union[str, None] = None  # None: env BGRL_WERANK_DATA, else datasets/ in the repo
    row_normalize: bool = True  # scale every feature row to sum 1
    standardize: bool = False  # per-feature zero mean, unit variance
    undirected: bool = True
    download: bool = True  # try PyG's downloader for missing files (needs the internet)
    csbm: CSBMConfig = field(default_factory=CSBMConfig)


@dataclass
class ViewConfig:
    """One augmented view: each probability is the probability of *dropping*."""

    edge_drop_p: float = 0.2
    feat_mask_p: float = 0.2


@dataclass
class ModelConfig:
    """Encoder (GCN) and predictor (MLP) sizes."""

    layer_sizes: list[int] = field(default_factory=lambda: [512, 256])
    predictor_hidden: int = 512
    # PyTorch's convention: running <- (1 - m)·running + m·batch, so m is the weight of the NEW
    # batch. 0.99 is what the BGRL reference passes (PyG BatchNorm forwards it to PyTorch unchanged):
    # the eval-mode statistics are essentially the last training view's. (0.01, used before, left
    # the initial running variance of 1 decaying as 0.99^n, far above the data's.)
    batchnorm_momentum: float = 0.99
    prelu: str = "shared"  # "shared": one slope per layer (reference nn.PReLU()); "channel": one per channel
    target_init: str = "reinit"  # "reinit": fresh initialisation (reference BGRL); "copy": the online weights


@dataclass
class WERankConfig:
    """The WERank regularizer Σ_l α_l ‖G_l − I‖_F."""

    enabled: bool = True
    # One float for every regularised matrix, or one per matrix in layer order (encoder layers, then
    # the predictor's two layers when include_predictor is true).
    alpha: Union[float, list[float]] = 0.01
    include_predictor: bool = False


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay to 0; EMA momentum on a cosine schedule to 1."""

    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup_epochs: int = 100
    momentum: float = 0.99  # initial EMA momentum m0 of the target network


@dataclass
class TrainConfig:
    epochs: int = 1000
    log_every: int = 1  # write a metrics.jsonl line every this many epochs
    progress: str = "auto"  # "auto" (a bar on a terminal only), "bar", "none"


@dataclass
class EvalConfig:
    """Linear evaluation of the frozen online encoder."""

    protocol: str = "public"  # public | random | preset
    num_splits: int = 20  # random protocol only
    split_seed: int = 0
    c_grid: Union[list[float], None] = None  # None: 2^-10 … 2^10
    backend: str = "torch"  # torch (fast, batched) | sklearn (reference)
    # Eval-mode BatchNorm statistics of the frozen encoder: "running" (as trained; with the default
    # momentum 0.99 essentially the last training view's, as the reference) or "views" (re-estimated
    # as the average over batchnorm_views fresh training views; see bgrl_werank/models/batchnorm.py)
    batchnorm: str = "running"
    batchnorm_views: int = 20


@dataclass
class CheckpointConfig:
    every: int = 100  # epochs between checkpoints (and always at the end)


@dataclass
class DiagnosticsConfig:
    every: int = 25  # epochs between rank diagnostics (~3.5% of training time on Cora); 0 turns them off
    rel_threshold: float = 1e-3


@dataclass
class Config:
    """A whole run."""

    name: str = "run"  # run folder: <out_dir>/<name>/<timestamp>/
    seed: int = 0  # model initialisation and augmentation streams
    out_dir: str = "runs"
    threads: int = 0  # torch threads; 0 keeps torch's default
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: list[ViewConfig] = field(
        default_factory=lambda: [ViewConfig(0.2, 0.3), ViewConfig(0.4, 0.4)]
    )
    werank: WERankConfig = field(default_factory=WERankConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


# --------------------------------------------------------------------------------------------------
# Building dataclasses from mappings, strictly
# --------------------------------------------------------------------------------------------------

T = typing.TypeVar("T")


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{key}.{i}") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return from_mapping(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(f"{key}: expected a mapping, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - schema bug


def _unknown_key(key: str, valid: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean '{_join(where, close[0])}'?" if close else f"; valid keys: {', '.join(valid)}"
    return ConfigError(f"unknown config key '{_join(where, key)}'{hint}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def from_mapping(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise _unknown_key(str(key), names, where)
        kwargs[key] = _coerce(value, hints[key], _join(where, key))
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    """The config as plain nested dicts and lists (for YAML/JSON)."""
    return dataclasses.asdict(cfg)


# --------------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``a.b.c=value`` override to a nested dict of the full config, in place."""
    if "=" not in assignment:
        raise ConfigError(f"override '{assignment}' has no '='; write --set key.path=value, e.g. --set seed=3")
    path, _, text = assignment.partition("=")
    path = path.strip()
    parts = path.split(".")
    if not path or any(p == "" for p in parts):
        raise ConfigError(f"override '{assignment}': empty key path; write --set key.path=value")
    node: Any = data
    walked = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"override '{path}': '{walked}' is a list of {len(node)} entries; use an index 0..{len(node) - 1}"
                )
            idx = int(part)
            if last:
                node[idx] = _parse_value(text)
                return
            node, walked = node[idx], _join(walked, part)
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"override '{path}': '{walked}' is a value, not a section")
        if part not in node:
            valid = list(node.keys())
            raise _unknown_key(part, valid, walked)
        if last:
            node[part] = _parse_value(text)
            return
        node, walked = node[part], _join(walked, part)


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------

PROTOCOLS = ("public", "random", "preset")
PRELU_MODES = ("shared", "channel")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def num_regularised(cfg: Config) -> int:
    """How many weight matrices WERank regularises under this config."""
    return len(cfg.model.layer_sizes) + (2 if cfg.werank.include_predictor else 0)


def validate(cfg: Config) -> Config:
    """Range checks that types alone cannot express; returns ``cfg`` or raises ConfigError."""
    _check(cfg.train.epochs > 0, f"train.epochs must be > 0, got {cfg.train.epochs}")
    _check(cfg.train.log_every > 0, f"train.log_every must be > 0, got {cfg.train.log_every}")
    _check(cfg.train.progress in ("auto", "bar", "none"), f"train.progress must be auto, bar or none, got {cfg.train.progress!r}")
    _check(len(cfg.model.layer_sizes) > 0, "model.layer_sizes is empty; give at least one layer size, e.g. [512, 256]")
    for i, s in enumerate(cfg.model.layer_sizes):
        _check(s > 0, f"model.layer_sizes.{i} must be > 0, got {s}")
    _check(cfg.model.predictor_hidden > 0, f"model.predictor_hidden must be > 0, got {cfg.model.predictor_hidden}")
    _check(0.0 <= cfg.model.batchnorm_momentum <= 1.0, f"model.batchnorm_momentum must be in [0, 1], got {cfg.model.batchnorm_momentum}")
    _check(cfg.model.prelu in PRELU_MODES, f"model.prelu must be one of {', '.join(PRELU_MODES)}, got {cfg.model.prelu!r}")
    _check(cfg.model.target_init in ("reinit", "copy"), f"model.target_init must be 'reinit' or 'copy', got {cfg.model.target_init!r}")
    _check(len(cfg.augment) == 2, f"augment must list exactly 2 views, got {len(cfg.augment)}")
    for i, v in enumerate(cfg.augment):
        for key in ("edge_drop_p", "feat_mask_p"):
            p = getattr(v, key)
            _check(0.0 <= p < 1.0, f"augment.{i}.{key} must be a probability in [0, 1), got {p}")
    alpha = cfg.werank.alpha
    alphas = alpha if isinstance(alpha, list) else [alpha]
    for i, a in enumerate(alphas):
        _check(a >= 0.0 and a != float("inf"), f"werank.alpha must be >= 0 and finite, got {a}")
    if isinstance(alpha, list):
        n = num_regularised(cfg)
        what = f"{len(cfg.model.layer_sizes)} encoder layers" + (" + 2 predictor layers" if cfg.werank.include_predictor else "")
        _check(len(alpha) == n, f"werank.alpha has {len(alpha)} values but there are {n} regularised matrices ({what}); give {n} values or one float")
    _check(cfg.optim.lr > 0, f"optim.lr must be > 0, got {cfg.optim.lr}")
    _check(cfg.optim.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {cfg.optim.weight_decay}")
    _check(
        0 <= cfg.optim.warmup_epochs < cfg.train.epochs,
        f"optim.warmup_epochs must be in [0, train.epochs) = [0, {cfg.train.epochs}), got {cfg.optim.warmup_epochs}; "
        f"lower it (e.g. --set optim.warmup_epochs={max(0, cfg.train.epochs // 10)}) or raise train.epochs",
    )
    _check(0.0 <= cfg.optim.momentum <= 1.0, f"optim.momentum must be in [0, 1], got {cfg.optim.momentum}")
    _check(cfg.eval.protocol in PROTOCOLS, f"eval.protocol must be one of {', '.join(PROTOCOLS)}, got {cfg.eval.protocol!r}")
    _check(cfg.eval.num_splits > 0, f"eval.num_splits must be > 0, got {cfg.eval.num_splits}")
    _check(cfg.eval.batchnorm in ("running", "views"), f"eval.batchnorm must be 'running' or 'views', got {cfg.eval.batchnorm!r}")
    _check(1 <= cfg.eval.batchnorm_views <= 10_000, f"eval.batchnorm_views must be in [1, 10000], got {cfg.eval.batchnorm_views}")
    _check(cfg.eval.backend in ("torch", "sklearn"), f"eval.backend must be 'torch' or 'sklearn', got {cfg.eval.backend!r}")
    if cfg.eval.c_grid is not None:
        _check(len(cfg.eval.c_grid) > 0 and all(c > 0 for c in cfg.eval.c_grid), "eval.c_grid must be a non-empty list of positive numbers or null")
    _check(cfg.checkpoint.every > 0, f"checkpoint.every must be > 0, got {cfg.checkpoint.every}")
    _check(cfg.diagnostics.every >= 0, f"diagnostics.every must be >= 0, got {cfg.diagnostics.every}")
    _check(cfg.threads >= 0, f"threads must be >= 0, got {cfg.threads}")
    c = cfg.data.csbm
    _check(c.num_nodes > 0 and c.num_classes > 1 and c.num_features > 0, "data.csbm needs num_nodes > 0, num_classes > 1 and num_features > 0")
    _check(0.0 <= c.homophily <= 1.0, f"data.csbm.homophily must be in [0, 1], got {c.homophily}")
    _check(0.0 < c.feature_density <= 1.0, f"data.csbm.feature_density must be in (0, 1], got {c.feature_density}")
    return cfg


# --------------------------------------------------------------------------------------------------
# Loading and saving
# --------------------------------------------------------------------------------------------------


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with one-line errors for a missing file or malformed YAML."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' not found; pass an existing file, e.g. --config configs/cora.yaml")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "malformed YAML"
        raise ConfigError(f"config file '{p}' is not valid YAML{where}: {problem}; fix the syntax there") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}' must hold a mapping of keys at the top level, got {type(data).__name__}")
    return data


def _merge(base: dict, update: dict, where: str = "") -> dict:
    for key, value in update.items():
        if key not in base:
            raise _unknown_key(str(key), list(base.keys()), where)
        if isinstance(base[key], dict) and isinstance(value, dict):
            _merge(base[key], value, _join(where, key))
        else:
            base[key] = value
    return base


def build_schema(schema: type[T], validator, data: dict | None = None, overrides=()) -> T:
    """Defaults of ``schema`` ← ``data`` (a partial nested mapping) ← ``overrides``; then ``validator``."""
    full = to_dict(schema())
    _merge(full, dict(data or {}))
    for assignment in overrides:
        apply_override(full, assignment)
    return validator(from_mapping(schema, full))


def build_config(data: dict | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The run config from a partial mapping and ``--set`` overrides, type- and range-checked."""
    return build_schema(Config, validate, data, overrides)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (or only defaults when ``path`` is None) and apply ``--set`` overrides."""
    data = read_yaml(path) if path is not None else {}
    return build_config(data, overrides)


# Keys added to the schema after runs were written, with the value those runs used (their saved
# configs lack the key, and the schema's default now differs). Applied to every saved config read
# back from a checkpoint, so older run folders still load, resume and evaluate as they were trained.
LEGACY_VALUES = {("model", "prelu"): "channel"}  # before 2026-12-01 every encoder PReLU was per channel


def upgrade_saved_config(data: dict) -> dict:
    """A saved config's mapping with :data:`LEGACY_VALUES` filled in where it lacks them (in place)."""
    for (section, key), value in LEGACY_VALUES.items():
        part = data.get(section)
        if isinstance(part, dict) and key not in part:
            part[key] = value
    return data


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (every key, defaults included)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
