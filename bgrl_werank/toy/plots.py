"""The figures: spectra over training (Figures 1, 4, 5), by depth (Figure 2), by noise strength (Figure 3).

All take the histories returned by :func:`bgrl_werank.toy.train.train_run` and return a matplotlib
figure. Singular values are drawn on a log axis; values below :data:`FLOOR` (exact zeros included)
are drawn at FLOOR so that they stay visible at the bottom of the panel.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

FLOOR = 1e-20
LOSS_TITLES = {"vicreg": "VICReg", "infonce": "InfoNCE", "ema": "EMA"}


def _clip(values) -> np.ndarray:
    return np.maximum(np.asarray(values, dtype=float), FLOOR)


def _index_ticks(d: int) -> list[int]:
    return sorted({1, *range(4, d + 1, 4), d})


def trajectories(without: dict, with_: dict, title: str) -> Figure:
    """Singular values of every weight matrix and of the embedding covariance over training.

    Top row: without WERank; bottom row: with WERank. One column per weight matrix, then the
    embedding covariance; one line per singular value, coloured by rank (dark = largest).
    """
    num_layers = len(without["weights"])
    cols = num_layers + 1
    fig, axes = plt.subplots(2, cols, figsize=(3.3 * cols, 5.6), sharex=True, sharey="col", squeeze=False)
    alpha = with_["spec"]["alpha"]
    for row, (hist, label) in enumerate(((without, "without WERank"), (with_, f"with WERank (α={alpha:g})"))):
        epochs = np.asarray(hist["epochs"])
        panels = [(f"$W_{l + 1}$", hist["weights"][l]) for l in range(num_layers)]
        panels.append(("embedding covariance", hist["embedding"]))
        for col, (name, series) in enumerate(panels):
            ax = axes[row, col]
            values = _clip(series)  # (records, d)
            d = values.shape[1]
            colors = plt.cm.viridis(np.linspace(0.0, 0.9, d))
            for i in range(d):
                ax.plot(epochs, values[:, i], color=colors[i], lw=1.1)
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.3)
            if row == 0:
                ax.set_title(name, fontsize=10)
            if row == 1:
                ax.set_xlabel("epoch")
            if col == 0:
                ax.set_ylabel(f"{label}\nsingular value", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def by_depth(pairs: dict[int, tuple[dict, dict]], title: str) -> Figure:
    """Final embedding-covariance singular values, sorted, for each depth L; solid without, dashed with WERank."""
    fig, ax = plt.subplots(figsize=(5.2, 3.9))
    colors = plt.cm.plasma(np.linspace(0.0, 0.8, len(pairs)))
    for color, (depth, (without, with_)) in zip(colors, sorted(pairs.items())):
        for hist, style, suffix in ((without, "-", ""), (with_, "--", " + WERank")):
            values = _clip(hist["embedding"][-1])
            ax.plot(np.arange(1, len(values) + 1), values, style, color=color, marker=".", lw=1.3,
                    label=f"L={depth}{suffix}")
    ax.set_yscale("log")
    ax.set_xlabel("singular value index")
    ax.set_xticks(_index_ticks(len(values)))
    ax.set_ylabel("embedding covariance singular value")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def by_noise(panels: dict[str, dict[float, tuple[dict, dict]]], title: str) -> Figure:
    """Final singular values of the single weight matrix for each k; one panel per loss.

    Solid: without WERank; dotted: with WERank; one colour per k.
    """
    names = list(panels)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        runs = panels[name]
        colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(runs)))
        for color, (k, (without, with_)) in zip(colors, sorted(runs.items())):
            for hist, style, suffix in ((without, "-", ""), (with_, ":", " + WERank")):
                values = _clip(hist["weights"][0][-1])
                ax.plot(np.arange(1, len(values) + 1), values, style, color=color, lw=1.5,
                        label=f"k={k:g}{suffix}" if suffix == "" else None)
        ax.set_yscale("log")
        ax.set_title(LOSS_TITLES.get(name, name), fontsize=10)
        ax.set_xlabel("singular value index")
        ax.set_xticks(_index_ticks(len(values)))
        ax.grid(True, which="major", alpha=0.3)
    axes[0, 0].set_ylabel("weight singular value")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="k", ls=":", lw=1.5))
    labels.append("dotted: + WERank")
    axes[0, -1].legend(handles, labels, fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
