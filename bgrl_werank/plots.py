"""Figures from run folders (matplotlib, PNG).

Usage::

    python -m bgrl_werank.plots spectra RUN_DIR                 # RUN_DIR/spectra.png
    python -m bgrl_werank.plots compare RUN_A RUN_B [...] [--labels BGRL "BGRL + WERank"] --out final.png

``spectra``: the singular values over epochs of every weight matrix and of the representation
covariance, one line per singular value (the layout of the paper's Figure 1).
``compare``: the final spectra of several runs, one panel per matrix, one line per run (labelled by
default with each run's method and WERank setting from its ``config.yaml``, e.g. "GRACE + WERank").
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .labels import run_label  # noqa: E402
from .rundir import atomic_write_bytes  # noqa: E402
from .train.diagnostics import read_spectra  # noqa: E402

_TITLES = {"representation_cov": "representation covariance", "prediction_cov": "prediction covariance",
           "projection_cov": "projection covariance"}


def _panels(record: dict) -> list[str]:
    """Weight matrices (the encoder's first, then each head's: ``predictor.0``, ``projector.1``, …),
    then the covariance spectra (the representations' first)."""
    keys = [k for k in record if k != "epoch"]
    matrices = [k for k in keys if not k.endswith("_cov")]
    covs = [k for k in keys if k.endswith("_cov")]
    return sorted(matrices, key=lambda k: k.split(".")[0] != "encoder") + sorted(covs, key=lambda k: k != "representation_cov")


def _title(key: str) -> str:
    if key in _TITLES:
        return _TITLES[key]
    if key.endswith("_cov"):
        return key[:-4].replace("_", " ") + " covariance"
    part, idx = key.rsplit(".", 1)
    return f"{part} W{int(idx) + 1}"


def _run_config(run_dir: Path) -> dict | None:
    import yaml

    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return cfg if isinstance(cfg, dict) else None


def _method(cfg: dict) -> tuple[str, bool]:
    """(method name, WERank on) of a saved config; configs written before methods existed are BGRL."""
    method = cfg.get("method")
    name = method.get("name", "bgrl") if isinstance(method, dict) else "bgrl"
    return str(name), bool(cfg["werank"]["enabled"])


def _describe(run_dir: Path) -> str:
    """'cora, GRACE + WERank (alpha 0.01), seed 0' from the run's config.yaml, else the folder name."""
    cfg = _run_config(run_dir)
    try:
        name, werank = _method(cfg)
        method = run_label(name, werank) + (f" (alpha {cfg['werank']['alpha']})" if werank else "")
        return f"{cfg['data']['name']}, {method}, seed {cfg['seed']}"
    except (KeyError, TypeError, ValueError, AttributeError):
        return run_dir.name


def default_labels(run_dirs: list[str | Path]) -> list[str]:
    """Legend labels for ``compare``: each run's method and WERank setting ('BGRL + WERank'), with its
    seed where that tells runs apart; the folder names where the configs say too little."""
    try:
        cfgs = [_run_config(Path(d)) for d in run_dirs]
        labels = [run_label(*_method(c)) for c in cfgs]
        if len(set(labels)) < len(labels):
            labels = [f"{lab}, seed {c['seed']}" for lab, c in zip(labels, cfgs)]
    except (KeyError, TypeError, ValueError, AttributeError):
        return [Path(d).name for d in run_dirs]
    return labels if len(set(labels)) == len(labels) else [Path(d).name for d in run_dirs]


def _grid(n: int):
    """A figure with ``n`` panels, three per row; unused panels are hidden."""
    ncols = min(3, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes


def plot_spectra(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Singular values over training for one run; returns the PNG path."""
    run_dir = Path(run_dir)
    records = read_spectra(run_dir)
    if not records:
        raise ValueError(f"no spectra.jsonl in {run_dir}; train with --set diagnostics.every=N (N > 0)")
    keys = _panels(records[0])
    epochs = np.array([r["epoch"] for r in records])
    fig, axes = _grid(len(keys))
    for ax, key in zip(axes.flat, keys):
        values = np.array([r[key] for r in records])  # (T, k), each row descending
        colors = plt.cm.viridis(np.linspace(0, 1, values.shape[1]))
        for j in range(values.shape[1]):
            ax.plot(epochs, np.maximum(values[:, j], 1e-12), color=colors[j], lw=0.8)
        ax.set_yscale("log")
        ax.set_title(_title(key), fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("singular value")
    fig.suptitle(f"Singular values during training — {_describe(run_dir)}", fontsize=11)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "spectra.png"
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())  # whole, and a link in the run folder is replaced, never followed
    return out


def plot_compare(run_dirs: list[str | Path], labels: list[str] | None, out: str | Path) -> Path:
    """Final spectra of several runs, one panel per matrix; returns the PNG path."""
    finals = []
    for d in run_dirs:
        records = read_spectra(d)
        if not records:
            raise ValueError(f"no spectra.jsonl in {d}; train with --set diagnostics.every=N (N > 0)")
        finals.append(records[-1])
    labels = labels or default_labels(run_dirs)
    if len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels for {len(run_dirs)} runs; give one label per run")
    keys = [k for k in _panels(finals[0]) if all(k in f for f in finals)]
    fig, axes = _grid(len(keys))
    for ax, key in zip(axes.flat, keys):
        for f, label in zip(finals, labels):
            s = np.maximum(np.array(f[key]), 1e-12)
            ax.plot(np.arange(1, len(s) + 1), s, label=f"{label} (epoch {f['epoch']})", lw=1.2)
        ax.set_yscale("log")
        ax.set_title(_title(key), fontsize=10)
        ax.set_xlabel("index")
        ax.set_ylabel("singular value")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Final singular value spectra", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bgrl_werank.plots", description="Figures from run folders.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("spectra", help="singular values over training for one run")
    s.add_argument("run_dir")
    s.add_argument("--out")
    c = sub.add_parser("compare", help="final spectra of several runs")
    c.add_argument("run_dirs", nargs="+")
    c.add_argument("--labels", nargs="+", help="one per run (default: each run's method and WERank setting)")
    c.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        if args.cmd == "spectra":
            path = plot_spectra(args.run_dir, args.out)
        else:
            path = plot_compare(args.run_dirs, args.labels, args.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
