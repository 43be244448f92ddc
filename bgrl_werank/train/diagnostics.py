"""Rank diagnostics recorded during training: is anything collapsing, and where?

Every ``diagnostics.every`` epochs we record

* the singular values of every weight matrix (online encoder layers, then the predictor's two);
* the singular values of the covariance of the representations (online encoder on the
  un-augmented graph, eval mode) and of the predictions (predictor applied to them);
* RankMe of the representations and the number of covariance singular values above
  ``rel_threshold`` × the largest (the "rank" columns).

Scalars go into ``metrics.jsonl`` (so they line up with the losses); the full spectra go to
``spectra.jsonl``, one JSON object per diagnostics epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..eval.rank import count_above, covariance_spectrum, rankme, singular_values
from ..losses import encoder_weights


def matrix_names(model) -> list[str]:
    enc = [f"encoder.{i}" for i in range(len(encoder_weights(model.online_encoder)))]
    pred = [f"predictor.{i}" for i in range(len(encoder_weights(model.predictor)))]
    return enc + pred


@torch.no_grad()
def collect(model, graph, rel_threshold: float = 1e-3) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Scalars and spectra for the current model (see the module docstring)."""
    spectra: dict[str, list[float]] = {}
    weights = encoder_weights(model.online_encoder) + encoder_weights(model.predictor)
    for name, w in zip(matrix_names(model), weights):
        spectra[name] = singular_values(w.detach()).tolist()
    was_training = model.training
    model.eval()
    with torch.no_grad():
        z = model.online_encoder(graph.x, graph.full_adjacency())
        q = model.predictor(z)
    model.train(was_training)
    rep_cov = covariance_spectrum(z)
    pred_cov = covariance_spectrum(q)
    spectra["representation_cov"] = rep_cov.tolist()
    spectra["prediction_cov"] = pred_cov.tolist()
    scalars = {
        "rankme": float(rankme(z)),
        "rank_representation": int(count_above(rep_cov, rel_threshold)),
        "rank_prediction": int(count_above(pred_cov, rel_threshold)),
    }
    for name in matrix_names(model):
        s = torch.tensor(spectra[name])
        scalars[f"rank_{name}"] = int(count_above(s, rel_threshold))
    return scalars, spectra


def append_spectra(run_dir: str | Path, epoch: int, spectra: dict[str, list[float]]) -> None:
    with open(Path(run_dir) / "spectra.jsonl", "a") as f:
        f.write(json.dumps({"epoch": epoch, **spectra}) + "\n")


def read_spectra(run_dir: str | Path, upto_epoch: int | None = None) -> list[dict[str, Any]]:
    path = Path(run_dir) / "spectra.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            break
        if upto_epoch is None or rec["epoch"] <= upto_epoch:
            out.append(rec)
    return out
