"""Full-batch training of one deep linear model on the noisy Gaussian views, recording spectra.

One epoch is one step on all N points: draw the two views x + n₁, x + n₂ (fresh noise every epoch
unless ``data.resample_noise`` is false), compute the SSL loss, add the WERank penalty
α Σ_l ‖W_l W_lᵀ − I‖_F on the encoder's weights (the same :func:`werank_penalty` and
:func:`encoder_weights` as the graph pipeline), take one optimiser step, and for the EMA model
update the teacher.

What is recorded (at epoch 0 before any step, every ``train.record_every`` epochs, and at the end):

* ``weights[l]``: the singular values of W_{l+1} of the (online) encoder, largest first;
* ``embedding``: the singular values of the covariance (1/N, centred) of the encoder's output on the
  clean data X (no noise), i.e. its eigenvalues, largest first;
* ``predictor``: the EMA model's predictor singular values (when it has one);
* ``loss``: the SSL loss of the step (without the penalty) and ``penalty``: the WERank term.

The run with alpha = 0 and the run with alpha > 0 of the same spec share the data, the initial
weights and the noise stream, so the two differ only by the penalty.
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..ema import ema_update
from ..losses import bgrl_loss, encoder_weights, info_nce_loss, vicreg_loss, werank_penalty
from .config import ToyConfig, optim_for
from .data import gaussian_data, view_noise
from .model import LinearNet, embedding_spectrum, singular_values

# The noise stream's seed is the run seed shifted by this, so it never equals the init stream's.
NOISE_SEED_OFFSET = 1_000_003


class ToyTrainingError(Exception):
    """Training produced a non-finite loss; the message names the run and the epoch."""


@dataclass(frozen=True)
class RunSpec:
    """What varies between the runs of one figure."""

    loss: str
    num_layers: int
    k: float
    alpha: float

    def label(self) -> str:
        return f"{self.loss} L={self.num_layers} k={self.k:g} alpha={self.alpha:g}"


def _optimizer(params: list[Tensor], name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _use_bar(mode: str) -> bool:
    return mode == "bar" or (mode == "auto" and sys.stderr.isatty())


def _ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    ema_update(teacher.parameters(), student.parameters(), momentum)


def train_run(cfg: ToyConfig, spec: RunSpec, progress: bool | None = None) -> dict:
    """Train one model and return its recorded history (plain JSON-ready types).

    Args:
        cfg: the resolved config (data, init, loss coefficients, optimisers, epochs).
        spec: the loss, depth, noise strength k and WERank alpha of this run.
        progress: show a tqdm bar (``None``: ``cfg.train.progress``).

    Returns:
        ``{"spec": {...}, "epochs": [...], "weights": [[svs per record] per layer], "embedding": [...],
        "predictor": [...] or None, "loss": [...], "penalty": [...]}``.

    Raises:
        ToyTrainingError: if the loss becomes non-finite.
    """
    d = cfg.data
    x = gaussian_data(d.num_points, d.dim, torch.Generator().manual_seed(d.seed))
    init_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator().manual_seed(cfg.seed + NOISE_SEED_OFFSET)
    net = LinearNet(spec.num_layers, d.dim, cfg.model.init, cfg.model.init_scale, init_gen)
    params = list(net.parameters())
    predictor = teacher = None
    if spec.loss == "ema":
        teacher = copy.deepcopy(net).requires_grad_(False)
        if cfg.ema.predictor == "linear":
            predictor = LinearNet(1, d.dim, cfg.model.init, cfg.model.init_scale, init_gen)
            params += list(predictor.parameters())
    opt_cfg = optim_for(cfg, spec.loss)
    opt = _optimizer(params, opt_cfg.name, opt_cfg.lr, opt_cfg.weight_decay)

    def draw_views() -> tuple[Tensor, Tensor]:
        n1 = view_noise(d.num_points, d.dim, d.noise_dims, spec.k, noise_gen, exact=d.whiten_noise)
        n2 = view_noise(d.num_points, d.dim, d.noise_dims, spec.k, noise_gen, exact=d.whiten_noise)
        return x + n1, x + n2

    fixed_views = None if d.resample_noise else draw_views()
    history: dict = {"spec": asdict(spec), "epochs": [], "weights": [[] for _ in range(spec.num_layers)],
                     "embedding": [], "predictor": [] if predictor is not None else None, "loss": [], "penalty": []}

    def record(epoch: int, loss: float, penalty: float) -> None:
        history["epochs"].append(epoch)
        for l, w in enumerate(encoder_weights(net)):
            history["weights"][l].append(singular_values(w))
        history["embedding"].append(embedding_spectrum(net, x))
        if predictor is not None:
            history["predictor"].append(singular_values(predictor.layers[0].weight))
        history["loss"].append(loss)
        history["penalty"].append(penalty)

    def objective() -> tuple[Tensor, Tensor]:
        v1, v2 = fixed_views if fixed_views is not None else draw_views()
        z1, z2 = net(v1), net(v2)
        if spec.loss == "vicreg":
            v = cfg.vicreg
            loss = vicreg_loss(z1, z2, sim_coeff=v.invariance, std_coeff=v.variance, cov_coeff=v.covariance, eps=v.eps)
        elif spec.loss == "infonce":
            loss = info_nce_loss(z1, z2, cfg.infonce.temperature)
        else:
            with torch.no_grad():
                t1, t2 = teacher(v1), teacher(v2)
            p1, p2 = (predictor(z1), predictor(z2)) if predictor is not None else (z1, z2)
            loss = bgrl_loss(p1, t2, p2, t1)
        penalty = werank_penalty(encoder_weights(net), spec.alpha) if spec.alpha > 0 else loss.new_zeros(())
        return loss, penalty

    epochs = cfg.train.epochs
    show = _use_bar(cfg.train.progress) if progress is None else progress
    bar = tqdm(total=epochs, disable=not show, desc=spec.label(), unit="ep", dynamic_ncols=True, leave=False)
    with torch.no_grad():
        loss0, pen0 = objective()
    record(0, float(loss0), float(pen0))
    for epoch in range(1, epochs + 1):
        loss, penalty = objective()
        total = loss + penalty
        if not math.isfinite(float(total.detach())):
            bar.close()
            raise ToyTrainingError(
                f"{spec.label()}: non-finite loss at epoch {epoch} (loss={float(loss.detach())}, penalty={float(penalty.detach())}); "
                f"lower the learning rate of this loss or raise model.init_scale"
            )
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if teacher is not None:
            _ema_update(teacher, net, cfg.ema.momentum)
        if epoch % cfg.train.record_every == 0 or epoch == epochs:
            record(epoch, float(loss.detach()), float(penalty.detach()))
        bar.update(1)
    bar.close()
    return history
