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
import math
import re
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
    """The encoder: a stack of ``conv → norm → activation`` layers (see :mod:`bgrl_werank.encoders`)."""

    encoder: str = "gcn"  # gcn | sage | gat | gin, or a name registered with bgrl_werank.encoders.register
    layer_sizes: list[int] = field(default_factory=lambda: [512, 256])
    norm: str = "batch"  # batch | layer | none
    activation: str = "prelu"  # prelu | relu | elu
    last_activation: bool = True  # norm + activation after the last layer too (BGRL, GRACE); CCA-SSG: false
    heads: int = 4  # gat only: attention heads per layer (concatenated; each layer size must divide by it)
    # PyTorch's convention: running <- (1 - m)·running + m·batch, so m is the weight of the NEW
    # batch. 0.99 is what the BGRL reference passes (PyG BatchNorm forwards it to PyTorch unchanged):
    # the eval-mode statistics are essentially the last training view's. (0.01, used before, left
    # the initial running variance of 1 decaying as 0.99^n, far above the data's.)
    batchnorm_momentum: float = 0.99
    prelu: str = "shared"  # "shared": one slope per layer (reference nn.PReLU()); "channel": one per channel


@dataclass
class BGRLConfig:
    """BGRL (Thakoor et al., 2022): online encoder + predictor regress an EMA target's representations.
    Defaults: the reference implementation's (predictor 512 hidden units, m₀ = 0.99)."""

    predictor_hidden: int = 512
    momentum: float = 0.99  # initial EMA momentum m₀ (weight of the OLD target weights), cosine schedule to 1
    target_init: str = "reinit"  # "reinit": fresh initialisation (reference BGRL); "copy": the online weights


@dataclass
class GRACEConfig:
    """GRACE (Zhu et al., 2020): InfoNCE over inter- and intra-view negatives after a projection head.
    Defaults: the reference's Cora values (τ = 0.4, 128-unit projection head)."""

    tau: float = 0.4
    projection_hidden: int = 128  # fc1 → ELU → fc2 with this many hidden units
    chunk_size: Union[int, None] = None  # rows per block of the exact chunked InfoNCE; None: automatic
    num_negatives: Union[int, None] = None  # None: all 2N − 2 negatives (exact); k: k sampled per anchor


@dataclass
class GBTConfig:
    """Graph Barlow Twins (Bielak et al., 2022): cross-correlation of standardised embeddings → identity."""

    lambd: Union[float, None] = None  # off-diagonal weight; None: 1/D, the reference's default


@dataclass
class CCASSGConfig:
    """CCA-SSG (Zhang et al., 2021): invariance + decorrelation of standardised embeddings.
    Default: the reference's Cora value λ = 1e-3."""

    lambd: float = 1e-3


@dataclass
class VICRegConfig:
    """VICReg (Bardes et al., 2022) on the encoder's output. Defaults: the VICReg paper's 25 / 25 / 1."""

    sim_coeff: float = 25.0
    std_coeff: float = 25.0
    cov_coeff: float = 1.0


@dataclass
class MethodConfig:
    """Which self-supervised method, and each method's own hyperparameters (only ``name``'s are used)."""

    name: str = "bgrl"  # bgrl | grace | gbt | cca_ssg | vicreg, or a name registered with bgrl_werank.methods.register
    bgrl: BGRLConfig = field(default_factory=BGRLConfig)
    grace: GRACEConfig = field(default_factory=GRACEConfig)
    gbt: GBTConfig = field(default_factory=GBTConfig)
    cca_ssg: CCASSGConfig = field(default_factory=CCASSGConfig)
    vicreg: VICRegConfig = field(default_factory=VICRegConfig)


@dataclass
class WERankConfig:
    """The WERank regularizer Σ_l α_l ‖G_l − I‖_F."""

    enabled: bool = True
    # One float for every regularised matrix, or one per matrix in the order the method names them
    # (the encoder's weight matrices in layer order, then the heads' when include_heads is true);
    # a list is checked against the built model (train.py prints the names when the length is wrong).
    alpha: Union[float, list[float]] = 0.01
    include_heads: bool = False  # also regularise the method's heads (BGRL's predictor, GRACE's projector)


@dataclass
class OptimConfig:
    """The optimizer and its learning-rate schedule."""

    optimizer: str = "adamw"  # adamw (decoupled weight decay; BGRL) | adam (L2 in the gradient; GRACE, CCA-SSG)
    lr: float = 1e-3
    weight_decay: float = 1e-5
    schedule: str = "warmup_cosine"  # warmup_cosine: linear warmup, then cosine decay to 0 (BGRL) | constant
    warmup_epochs: int = 100  # warmup_cosine only


@dataclass
class TrainConfig:
    epochs: int = 1000
    log_every: int = 1  # write a metrics.jsonl line every this many epochs
    progress: str = "auto"  # "auto" (a bar on a terminal only), "bar", "none"
    # "full": one step per epoch on the whole graph. "subgraph": an epoch is one pass over batches of
    # batch_size seed nodes; each step trains on the seeds' sampled subgraph, the loss on the seeds
    # (bgrl_werank/sampling.py). Schedules (learning rate, BGRL's momentum) then count steps.
    batching: str = "full"
    batch_size: int = 1024  # subgraph: seed nodes per batch (ceil(N / batch_size) batches of near-equal size)
    sampler: str = "khop"  # subgraph: khop (k-hop neighbourhoods, needs nothing extra) | neighbor (PyG NeighborLoader; needs pyg-lib or torch-sparse)
    num_hops: Union[int, None] = None  # khop: hops around the seeds; None: one per encoder layer; 0: induced subgraph of the seeds
    num_neighbors: Union[list[int], None] = None  # neighbor: sampled in-neighbours per hop (-1: all); None: 10 per encoder layer
    # Data parallelism (bgrl_werank/distributed.py). Under torchrun each step takes one batch per process and
    # averages their gradients. replicas: N emulates N such processes in this one (each step: N batches,
    # each with its own view stream, gradients averaged); 1 under torchrun.
    replicas: int = 1
    dist_timeout_s: float = 300.0  # torchrun: a collective waiting longer than this for its peers fails the run


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
    # How the frozen encoder's representations (probe, RankMe, diagnostics) are computed: "full"
    # (one forward pass over the whole graph) or "layerwise" (layer by layer over batches of
    # inference_batch_size target nodes; equal within float tolerance, peak memory bounded by a batch's
    # edges; bgrl_werank/inference.py)
    inference: str = "full"
    inference_batch_size: int = 4096


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
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda | cuda:N
    backend: str = "auto"  # auto | fast (CPU GCN kernels) | plain (stock PyTorch + PyG, any device)
    threads: int = 0  # torch threads; 0 keeps torch's default
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
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


def _same_kind(value: Any, tp: Any) -> bool:
    """Whether ``value`` has the shape of type ``tp``: a list for a list, a mapping for a mapping or
    dataclass, null for null, a scalar for a scalar."""
    if tp is type(None):
        return value is None
    if typing.get_origin(tp) is list:
        return isinstance(value, list)
    if dataclasses.is_dataclass(tp) or tp is dict:
        return isinstance(value, dict)
    return value is not None and not isinstance(value, (list, dict))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        errors = {}
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors[arg] = e
        # the one arm of the value's own kind (a list for a list, a number for a number) says best
        # what is wrong with it, e.g. "werank.alpha.1: expected a finite number, got nan"
        same = [arg for arg in errors if _same_kind(value, arg)]
        if len(same) == 1:
            raise errors[same[0]]
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
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an integer beyond float range
                raise ConfigError(f"{key}: expected a finite number, got {value!r}") from None
        elif isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(number):  # .nan, .inf, 1e999: never a valid setting
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
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
    except (yaml.YAMLError, RecursionError):  # not YAML (or nested past Python's recursion limit): the text itself
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

# --- Ranges of the numeric keys --------------------------------------------------------------------
#
# Every int and float key, list items included, has an entry in a range table (RANGES here; the toy
# experiments and the sweep configs keep their own, built the same way) and is checked against it at
# load time, so that no value reaches torch or numpy that they cannot take (a segfault, an allocator
# or overflow traceback, a hang, a NaN written into the logs). A table key is the dotted path with
# ``*`` for every list index: ``model.layer_sizes.*`` covers ``model.layer_sizes.0``, ``.1``, ...
# (a key that is one number or a list of them, like ``werank.alpha``, has an entry for each form).
# NaN and ±inf are refused earlier, by the coercion, for every float key. Cross-key conditions
# (warmup < epochs, csbm num_classes <= num_nodes, ...) are checked in the validators.


@dataclass(frozen=True)
class Bounds:
    """An interval ``[low, high]``; ``low_open`` / ``high_open`` exclude that end. ``what``: how the
    message names the accepted values ("an integer" / "a number" by the value's type by default)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    what: str = ""

    def __contains__(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def interval(self) -> str:
        return f"{'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}{')' if self.high_open else ']'}"


def _num(x: float) -> str:
    """A bound as people write it: 1024, 0.0001, 1e-08 (never 1e+06 for a round number)."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def closed(low: float, high: float, what: str = "") -> Bounds:
    """``[low, high]``."""
    return Bounds(low, high, what=what)


def open_low(low: float, high: float, what: str = "") -> Bounds:
    """``(low, high]``."""
    return Bounds(low, high, low_open=True, what=what)


def open_high(low: float, high: float, what: str = "") -> Bounds:
    """``[low, high)``."""
    return Bounds(low, high, high_open=True, what=what)


# Seeds go to torch.manual_seed (accepts [-2^63, 2^64 - 1]) and may meet numpy (np.random.seed,
# RandomState and sklearn's random_state accept [0, 2^32 - 1]; default_rng any integer >= 0). The
# code derives seeds by adding offsets (trainer.BATCHNORM_VIEWS_SEED = 7 919, toy NOISE_SEED_OFFSET =
# 1 000 003); 2^31 - 1 plus any offset below 2^31 stays within all of them, and is a C int besides.
SEED = closed(0, 2**31 - 1)
# Threads: torch.set_num_threads(10**8) segfaults creating the pools; no machine torch runs on has
# more than 1024 cores. 0 keeps torch's default.
THREADS = closed(0, 1024)
# Layer and head widths: published graph SSL encoders use 128 to 1024 (VICReg-style expanders up to
# 8192); a 16384 x 16384 float32 matrix is 1 GiB (3 GiB with AdamW's moments), which fits a big GPU,
# while 10^11 fails in the allocator.
WIDTH = closed(1, 16_384)
# Epoch counts and every-N-epochs intervals: the longest published runs are 10 000 epochs (BGRL on
# Amazon, Coauthor); 10^6 leaves 100x headroom and keeps every schedule's arithmetic exact.
MAX_EPOCHS = 1_000_000
EPOCHS = closed(1, MAX_EPOCHS)
EVERY = closed(1, MAX_EPOCHS)  # larger than train.epochs means "only at the end" already
# Loss-term weights and regularizer coefficients: the published ones are at most 25; 10^6 is
# absurd already, and keeps a weighted O(1) term far from float32's overflow (3.4e38).
COEFF = closed(0.0, 1e6)
PROBABILITY = open_high(0.0, 1.0, "a probability")  # of dropping: 1 would drop every edge / feature
FRACTION = closed(0.0, 1.0)
# Row counts handed to torch as sizes: the GRACE loss clamps them to the graph (a block has at most
# 2N rows; k >= 2N - 2 negatives is the exact loss), so any value that is still a C int is safe.
ROWS = closed(1, 2**31 - 1)

RANGES: dict[str, Bounds] = {
    "seed": SEED,
    "threads": THREADS,
    # csbm: a synthetic graph generated in memory; 10^7 nodes (x 64 features: 2.5 GiB) is more than
    # ogbn-products has. Features and classes: bag-of-words features of real graphs stay below 10^5,
    # classes below 10^3. Degree: denser than any real graph (ogbn-proteins: ~600); csbm needs
    # avg_degree <= num_nodes - 1 as well (checked below). Signal: a distance between class means;
    # beyond 10^3 the classes are trivially separable, 10^6 keeps features finite in float32.
    "data.csbm.num_nodes": closed(2, 10_000_000),
    "data.csbm.num_classes": closed(2, 10_000),
    "data.csbm.avg_degree": closed(0.0, 10_000.0),
    "data.csbm.num_features": closed(1, 1_000_000),
    "data.csbm.homophily": FRACTION,  # a share of edges
    "data.csbm.signal": closed(0.0, 1e6),
    "data.csbm.feature_density": open_low(0.0, 1.0),  # a share of non-zero features; 0 leaves none
    "data.csbm.seed": SEED,
    "augment.*.edge_drop_p": PROBABILITY,
    "augment.*.feat_mask_p": PROBABILITY,
    "model.layer_sizes.*": WIDTH,
    # GAT heads: the published ones use 1 to 8; attention memory grows with heads x edges (and each
    # layer size must divide by heads, checked when the encoder is built).
    "model.heads": closed(1, 256),
    "model.batchnorm_momentum": FRACTION,  # a convex weight (PyTorch's momentum convention)
    "method.bgrl.predictor_hidden": WIDTH,
    "method.bgrl.momentum": FRACTION,  # EMA weight of the old target weights
    # temperature: published 0.1 to 1; below 1e-6 the logits s/tau overflow float32, above 10^3 the
    # loss is flat (no gradient)
    "method.grace.tau": closed(1e-6, 1e3),
    "method.grace.projection_hidden": WIDTH,
    "method.grace.chunk_size": ROWS,
    "method.grace.num_negatives": ROWS,
    "method.gbt.lambd": COEFF,
    "method.cca_ssg.lambd": COEFF,
    "method.vicreg.sim_coeff": COEFF,
    "method.vicreg.std_coeff": COEFF,
    "method.vicreg.cov_coeff": COEFF,
    "werank.alpha": COEFF,
    "werank.alpha.*": COEFF,
    # Adam(W) moves every weight by about lr per step: published rates are 1e-5 to 5e-3, and above
    # 10 every weight jumps by 10 each step. 0 would never train.
    "optim.lr": open_low(0.0, 10.0),
    # AdamW shrinks weights by lr x weight_decay per step (Adam adds it to the gradient): published
    # values are 0 to 1e-3; 100 is generous.
    "optim.weight_decay": closed(0.0, 100.0),
    "optim.warmup_epochs": closed(0, MAX_EPOCHS - 1),  # and < train.epochs (checked below)
    "train.epochs": EPOCHS,
    "train.log_every": EVERY,
    # seed nodes per batch: at least 2 (BatchNorm and the standardising losses need two rows); more
    # than the graph's nodes means one batch; below 2^31 as a C int for torch sizes
    "train.batch_size": closed(2, 2**31 - 1, "a number of seed nodes"),
    # hops around the seeds: an encoder has at most a few dozen layers
    "train.num_hops": closed(0, 64),
    "train.num_neighbors.*": closed(-1, 1_000_000),  # -1: all in-neighbours
    # emulated data-parallel processes: each costs a batch's forward and backward per step; 4096 is far
    # beyond any cluster this code would run on
    "train.replicas": closed(1, 4096),
    # seconds a collective may wait for its peers: below 1 s a slow batch on one process would fail the
    # run; a day is generous for the slowest step
    "train.dist_timeout_s": closed(1.0, 86_400.0),
    # 20 random splits in the papers; each split is a permutation of the nodes and a probe fit per C,
    # so 10^9 never finishes
    "eval.num_splits": closed(1, 1000),
    "eval.split_seed": SEED,
    # inverse L2 strengths of the probe: the default grid is 2^-10 ... 2^10 (about 1e-3 ... 1e3);
    # beyond 1e-8 / 1e8 the penalty 1/C swamps the loss or vanishes in float precision
    "eval.c_grid.*": closed(1e-8, 1e8),
    "eval.batchnorm_views": closed(1, 10_000),  # each is a forward pass over the whole graph
    "eval.inference_batch_size": closed(1, 2**31 - 1),  # target nodes per batch of layerwise inference
    "checkpoint.every": EVERY,
    "diagnostics.every": closed(0, MAX_EPOCHS),  # 0 turns them off
    "diagnostics.rel_threshold": FRACTION,  # a fraction of the largest singular value
}


def check_ranges(cfg: Any, table: dict[str, Bounds], where: str = "") -> None:
    """Check every int and float in ``cfg`` (a dataclass instance, walked through its fields and
    lists) against ``table``; raises ConfigError naming the first key out of range.

    A number whose key has no entry is a bug of the schema (a key added without its range) and
    raises LookupError, so that no key can go unchecked (the tests load every schema's defaults).
    """
    _check_value(cfg, table, where, where)


def _check_value(value: Any, table: dict[str, Bounds], key: str, pattern: str) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _check_value(getattr(value, f.name), table, _join(key, f.name), _join(pattern, f.name))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, table, f"{key}.{i}", f"{pattern}.*")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        bounds = table.get(pattern)
        if bounds is None:
            raise LookupError(f"config key '{pattern}' has no range; add one to the schema's range table")
        if value not in bounds:
            what = bounds.what or ("an integer" if isinstance(value, int) else "a number")
            raise ConfigError(f"{key} must be {what} in {bounds.interval()}, got {value!r}")
    # strings, booleans, null and free-form mappings (a sweep's grid) have no range


# --- Folder names -------------------------------------------------------------------------------

FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,99}")


def check_folder_name(value: str, key: str) -> None:
    """``value`` becomes one folder under an output folder: a single, portable name, so that it can
    never point elsewhere (``..``, ``/``, an absolute path) or read as an option (a leading ``-``)."""
    if FOLDER_NAME.fullmatch(value) is None:
        raise ConfigError(f"{key} must be a single folder name: 1 to 100 letters, digits, '.', '_', '-' or '+', "
                          f"starting with a letter, digit or '_' (no '/', not '.' or '..'), got {value!r}")


PROTOCOLS = ("public", "random", "preset")
PRELU_MODES = ("shared", "channel")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


METHOD_NAMES = ("bgrl", "grace", "gbt", "cca_ssg", "vicreg")  # shipped; bgrl_werank.methods.register adds more
ENCODER_NAMES = ("gcn", "sage", "gat", "gin")  # shipped; bgrl_werank.encoders.register adds more
NORMS = ("batch", "layer", "none")
ACTIVATIONS = ("prelu", "relu", "elu")
BACKENDS = ("auto", "fast", "plain")


def _registered(kind: str) -> tuple[str, ...]:
    """Names of methods/encoders known now, the shipped ones plus any registered in this process."""
    import importlib

    try:
        module = importlib.import_module(f"bgrl_werank.{kind}")
        return tuple(module.names() if kind == "methods" else module.available())
    except (ImportError, AttributeError):  # during the package's own import
        return METHOD_NAMES if kind == "methods" else ENCODER_NAMES


def _check_device(device: str) -> None:
    import re

    _check(device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", device) is not None,
           f"device must be auto, cpu, cuda or cuda:N, got {device!r}")


def validate(cfg: Config) -> Config:
    """Range checks that types alone cannot express; returns ``cfg`` or raises ConfigError.

    Every numeric key is checked against :data:`RANGES`; the checks here add what one key's range
    cannot say (choices, list lengths, conditions between keys). Whether a CUDA device exists, and
    whether a per-matrix ``werank.alpha`` list has one value per regularised matrix, depend on the
    machine and on the built model; :mod:`bgrl_werank.backends` and the trainer check those, before
    any training.
    """
    # These three keep their long-standing wording (scripts and tests match it); RANGES covers the
    # rest of each key's range.
    _check(cfg.train.epochs > 0, f"train.epochs must be > 0, got {cfg.train.epochs}")
    alpha = cfg.werank.alpha
    for key, a in ([(f"werank.alpha.{i}", a) for i, a in enumerate(alpha)] if isinstance(alpha, list) else [("werank.alpha", alpha)]):
        _check(a >= 0.0, f"{key} must be >= 0 and finite, got {a}")
    _check(cfg.method.grace.tau > 0, f"method.grace.tau must be > 0, got {cfg.method.grace.tau}")
    check_ranges(cfg, RANGES)
    check_folder_name(cfg.name, "name")
    _check(cfg.train.progress in ("auto", "bar", "none"), f"train.progress must be auto, bar or none, got {cfg.train.progress!r}")
    _check(cfg.train.batching in ("full", "subgraph"), f"train.batching must be full or subgraph, got {cfg.train.batching!r}")
    _check(cfg.train.sampler in ("khop", "neighbor"), f"train.sampler must be khop or neighbor, got {cfg.train.sampler!r}")
    _check(cfg.train.num_neighbors is None or len(cfg.train.num_neighbors) > 0,
           "train.num_neighbors is an empty list; give one count per hop, e.g. [10, 10], or null")
    _check(cfg.eval.inference in ("full", "layerwise"), f"eval.inference must be full or layerwise, got {cfg.eval.inference!r}")
    methods = _registered("methods")
    _check(cfg.method.name in methods, f"method.name must be one of {', '.join(methods)}, got {cfg.method.name!r}")
    encoders = _registered("encoders")
    _check(cfg.model.encoder in encoders, f"model.encoder must be one of {', '.join(encoders)}, got {cfg.model.encoder!r}")
    _check(cfg.model.norm in NORMS, f"model.norm must be one of {', '.join(NORMS)}, got {cfg.model.norm!r}")
    _check(cfg.model.activation in ACTIVATIONS, f"model.activation must be one of {', '.join(ACTIVATIONS)}, got {cfg.model.activation!r}")
    _check_device(cfg.device)
    _check(cfg.backend in BACKENDS, f"backend must be one of {', '.join(BACKENDS)}, got {cfg.backend!r}")
    _check(len(cfg.model.layer_sizes) > 0, "model.layer_sizes is empty; give at least one layer size, e.g. [512, 256]")
    _check(cfg.model.prelu in PRELU_MODES, f"model.prelu must be one of {', '.join(PRELU_MODES)}, got {cfg.model.prelu!r}")
    b = cfg.method.bgrl
    _check(b.target_init in ("reinit", "copy"), f"method.bgrl.target_init must be 'reinit' or 'copy', got {b.target_init!r}")
    _check(len(cfg.augment) == 2, f"augment must list exactly 2 views, got {len(cfg.augment)}")
    _check(not isinstance(alpha, list) or len(alpha) > 0, "werank.alpha is an empty list; give one float or one value per matrix")
    _check(cfg.optim.optimizer in ("adamw", "adam"), f"optim.optimizer must be 'adamw' or 'adam', got {cfg.optim.optimizer!r}")
    _check(cfg.optim.schedule in ("warmup_cosine", "constant"), f"optim.schedule must be 'warmup_cosine' or 'constant', got {cfg.optim.schedule!r}")
    _check(
        0 <= cfg.optim.warmup_epochs < cfg.train.epochs,
        f"optim.warmup_epochs must be in [0, train.epochs) = [0, {cfg.train.epochs}), got {cfg.optim.warmup_epochs}; "
        f"lower it (e.g. --set optim.warmup_epochs={max(0, cfg.train.epochs // 10)}) or raise train.epochs",
    )
    _check(cfg.eval.protocol in PROTOCOLS, f"eval.protocol must be one of {', '.join(PROTOCOLS)}, got {cfg.eval.protocol!r}")
    _check(cfg.eval.batchnorm in ("running", "views"), f"eval.batchnorm must be 'running' or 'views', got {cfg.eval.batchnorm!r}")
    _check(cfg.eval.backend in ("torch", "sklearn"), f"eval.backend must be 'torch' or 'sklearn', got {cfg.eval.backend!r}")
    if cfg.eval.c_grid is not None:
        _check(len(cfg.eval.c_grid) > 0, "eval.c_grid must be a non-empty list of positive numbers or null")
    c = cfg.data.csbm
    _check(c.num_classes <= c.num_nodes, f"data.csbm.num_classes must be <= data.csbm.num_nodes ({c.num_nodes}), got {c.num_classes}")
    _check(c.avg_degree <= c.num_nodes - 1,
           f"data.csbm.avg_degree must be <= data.csbm.num_nodes - 1 ({c.num_nodes - 1}), got {_num(c.avg_degree)}")
    # the generator holds num_nodes x (features stored per node) feature entries and avg_degree x
    # num_nodes edge ends in memory; beyond 2^31 of either (8 GiB of float32, 16 GiB of indices) a graph
    # is not synthetic-sized. Sparse features (feature_density < 1) store k = max(1, round(density x F))
    # ones per node (bgrl_werank.data.csbm), dense ones all F.
    per_node = c.num_features if c.feature_density >= 1.0 else max(1, round(c.feature_density * c.num_features))
    _check(c.num_nodes * per_node <= 2**31,
           f"data.csbm.num_nodes x data.csbm.num_features must be <= 2^31 stored entries, got {c.num_nodes} x {per_node}"
           f"{'' if per_node == c.num_features else f' ({c.num_features} features at density {_num(c.feature_density)})'}; "
           "lower one (or data.csbm.feature_density)")
    _check(c.num_nodes * c.avg_degree <= 2**31,
           f"data.csbm.num_nodes x data.csbm.avg_degree must be <= 2^31 edge ends, got {c.num_nodes} x {_num(c.avg_degree)}; lower one")
    return cfg


# --------------------------------------------------------------------------------------------------
# Loading and saving
# --------------------------------------------------------------------------------------------------


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with one-line errors for a missing, unreadable or non-UTF-8 file and
    malformed YAML."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file '{p}' is a folder; pass a YAML file, e.g. --config configs/cora.yaml")
    if not p.is_file():
        raise ConfigError(f"config file '{p}' not found; pass an existing file, e.g. --config configs/cora.yaml")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config file '{p}' ({e.strerror or e}); check the file and its permissions") from None
    try:
        text = raw.decode("utf-8")  # YAML files are UTF-8 (a leading byte-order mark is fine)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"config file '{p}' is not UTF-8 text: byte 0x{raw[e.start]:02x} at byte offset {e.start} "
                          f"(line {line}) is not valid UTF-8; save the file as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (a control character)
        char = e.character if isinstance(e.character, int) else ord(e.character)
        raise ConfigError(f"config file '{p}' is not valid YAML: character #x{char:04x} at character offset "
                          f"{e.position} is not allowed in YAML; remove it") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "malformed YAML"
        raise ConfigError(f"config file '{p}' is not valid YAML{where}: {problem}; fix the syntax there") from None
    except RecursionError:
        raise ConfigError(f"config file '{p}' nests lists or mappings too deeply to read; "
                          "a config is a few levels deep") from None
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


# Keys that moved when the project grew from BGRL alone to several methods: old name → new name.
# Config files, ``--set`` overrides and saved run configs that use an old name still work (the value
# goes to the new key); everything written now uses the new names.
MOVED_KEYS = {
    "model.predictor_hidden": "method.bgrl.predictor_hidden",
    "model.target_init": "method.bgrl.target_init",
    "optim.momentum": "method.bgrl.momentum",
    "werank.include_predictor": "werank.include_heads",
}


def _move_keys(data: dict) -> dict:
    """A copy of a partial config mapping with :data:`MOVED_KEYS` renamed (an old and a new name both
    given is an error)."""
    import copy

    data = copy.deepcopy(data)
    for old, new in MOVED_KEYS.items():
        (s_old, k_old), new_parts = old.split("."), new.split(".")
        section = data.get(s_old)
        if not isinstance(section, dict) or k_old not in section:
            continue
        value = section.pop(k_old)
        if not section:
            del data[s_old]
        node = data
        for part in new_parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"'{old}' moved to '{new}', but '{part}' is not a section here")
        if new_parts[-1] in node:
            raise ConfigError(f"'{old}' and '{new}' are both given; '{old}' is the old name of '{new}', keep only '{new}'")
        node[new_parts[-1]] = value
    return data


def _move_override(assignment: str) -> str:
    path, sep, text = assignment.partition("=")
    new = MOVED_KEYS.get(path.strip())
    return f"{new}{sep}{text}" if new and sep else assignment


def build_schema(schema: type[T], validator, data: dict | None = None, overrides=()) -> T:
    """Defaults of ``schema`` ← ``data`` (a partial nested mapping) ← ``overrides``; then ``validator``."""
    full = to_dict(schema())
    moved = schema is Config
    _merge(full, _move_keys(dict(data or {})) if moved else dict(data or {}))
    for assignment in overrides:
        apply_override(full, _move_override(assignment) if moved else assignment)
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
