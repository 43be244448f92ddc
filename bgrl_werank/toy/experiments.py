"""The paper's five controlled experiments: which runs each figure needs, and how it is drawn.

=========  ==========================================================  =====================
figure     runs (each without and with WERank)                         drawn by
=========  ==========================================================  =====================
1, 4, 5    one model: VICReg (1), InfoNCE (4), EMA (5); depth           :func:`plots.trajectories`
           ``model.num_layers``, noise ``data.k``
2          ``loss`` at every depth in ``sweep.num_layers``, noise        :func:`plots.by_depth`
           ``data.k``
3          every loss in ``sweep.losses`` × every k in ``sweep.k``,      :func:`plots.by_noise`
           depth ``model.num_layers`` (1 in the paper)
=========  ==========================================================  =====================
"""

from __future__ import annotations

import time
from typing import Callable

from matplotlib.figure import Figure

from . import plots
from .config import ToyConfig
from .train import RunSpec, train_run

FIGURES = (1, 2, 3, 4, 5)
# Figures 1, 4 and 5 are the same experiment with a different loss.
TRAJECTORY_LOSS = {1: "vicreg", 4: "infonce", 5: "ema"}


def run_specs(cfg: ToyConfig, figure: int) -> list[RunSpec]:
    """Every run a figure needs, in order; each spec appears with alpha = 0 and alpha = werank.alpha."""
    a = cfg.werank.alpha
    if figure in TRAJECTORY_LOSS:
        settings = [(TRAJECTORY_LOSS[figure], cfg.model.num_layers, cfg.data.k)]
    elif figure == 2:
        settings = [(cfg.loss, depth, cfg.data.k) for depth in cfg.sweep.num_layers]
    elif figure == 3:
        settings = [(loss, cfg.model.num_layers, k) for loss in cfg.sweep.losses for k in cfg.sweep.k]
    else:
        raise ValueError(f"figure must be one of {FIGURES}, got {figure}")
    return [RunSpec(loss, depth, k, alpha) for loss, depth, k in settings for alpha in (0.0, a)]


def run_figure(cfg: ToyConfig, figure: int, progress: bool | None = None,
               on_run_done: Callable[[RunSpec, dict, float], None] | None = None) -> tuple[list[dict], Figure]:
    """Train every run of ``figure`` and draw it.

    Args:
        cfg: the resolved config.
        figure: 1–5.
        progress: show a bar per run (``None``: ``cfg.train.progress``).
        on_run_done: called after each run with its spec, history and seconds.

    Returns:
        ``(histories, figure)``; each history carries its spec and a ``seconds`` entry.
    """
    histories = []
    for spec in run_specs(cfg, figure):
        t0 = time.perf_counter()
        hist = train_run(cfg, spec, progress=progress)
        hist["seconds"] = time.perf_counter() - t0
        histories.append(hist)
        if on_run_done is not None:
            on_run_done(spec, hist, hist["seconds"])
    return histories, draw(cfg, figure, histories)


def _pairs(histories: list[dict]) -> list[tuple[dict, dict]]:
    return [(histories[i], histories[i + 1]) for i in range(0, len(histories), 2)]


def draw(cfg: ToyConfig, figure: int, histories: list[dict]) -> Figure:
    """Draw ``figure`` from the histories :func:`run_figure` produced (or ``spectra.json`` holds)."""
    pairs = _pairs(histories)
    epochs = cfg.train.epochs
    if figure in TRAJECTORY_LOSS:
        (without, with_), = pairs
        s = without["spec"]
        name = plots.LOSS_TITLES[s["loss"]]
        return plots.trajectories(without, with_, f"Figure {figure}: {name}, L={s['num_layers']}, k={s['k']:g}, "
                                                  f"{epochs} epochs")
    if figure == 2:
        by = {p[0]["spec"]["num_layers"]: p for p in pairs}
        name = plots.LOSS_TITLES[pairs[0][0]["spec"]["loss"]]
        return plots.by_depth(by, f"Figure 2: {name}, k={cfg.data.k:g}, {epochs} epochs")
    panels: dict[str, dict[float, tuple[dict, dict]]] = {}
    for p in pairs:
        panels.setdefault(p[0]["spec"]["loss"], {})[p[0]["spec"]["k"]] = p
    return plots.by_noise(panels, f"Figure 3: L={cfg.model.num_layers}, {epochs} epochs")


def summarise(histories: list[dict]) -> list[dict]:
    """Final spectra of every run in a compact form (what the README quotes)."""
    rows = []
    for h in histories:
        weights = [w[-1] for w in h["weights"]]
        rows.append({
            **h["spec"],
            "epochs": h["epochs"][-1],
            "final_loss": h["loss"][-1],
            "weight_sv_min": [min(w) for w in weights],
            "weight_sv_max": [max(w) for w in weights],
            "weight_sv": weights,
            "embedding_sv": h["embedding"][-1],
            "seconds": h.get("seconds"),
        })
    return rows
