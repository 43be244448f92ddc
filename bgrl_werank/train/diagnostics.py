"""Rank diagnostics recorded during training: is anything collapsing, and where?

Every ``diagnostics.every`` epochs we record

* the singular values of every weight matrix the method has (the encoder's layers as
  ``encoder.0``, ``encoder.1``, …, then each head's, e.g. BGRL's ``predictor.0``, ``predictor.1``);
* the singular values of the covariance of the representations (online encoder on the
  un-augmented graph, eval mode) and of each head's output on them (BGRL's predictions:
  ``prediction_cov``; GRACE's projections: ``projection_cov``);
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

# what a head's output is called in the spectra ("prediction_cov", "rank_prediction")
OUTPUT_NAMES = {"predictor": "prediction", "projector": "projection"}


def _groups(method) -> list[tuple[str, torch.nn.Module]]:
    return [("encoder", method.encoder), *method.heads.items()]


def matrix_names(method) -> list[str]:
    """``encoder.0``, ``encoder.1``, …, then ``<head>.0``, … for each head's weight matrices."""
    return [f"{group}.{i}" for group, module in _groups(method) for i in range(len(encoder_weights(module)))]


@torch.no_grad()
def collect(method, data, rel_threshold: float = 1e-3,
            batch_size: int | None = None) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Scalars and spectra for the current method on ``data`` (the full graph as its encoder reads it);
    ``batch_size``: the representations layer by layer over that many nodes at a time (``eval.inference:
    layerwise``, :func:`bgrl_werank.inference.layerwise_forward`), else in one pass."""
    spectra: dict[str, list[float]] = {}
    weights = [w for _, module in _groups(method) for w in encoder_weights(module)]
    for name, w in zip(matrix_names(method), weights):
        spectra[name] = singular_values(w.detach().float().cpu()).tolist()
    was_training = method.training
    method.eval()
    try:
        z = method.encoder(data.x, data.edge_index) if batch_size is None else method.embed(data, batch_size=batch_size)
        outputs = {OUTPUT_NAMES.get(head, head): module(z) for head, module in method.heads.items()}
    finally:
        method.train(was_training)
    rep_cov = covariance_spectrum(z.float().cpu())
    spectra["representation_cov"] = rep_cov.tolist()
    scalars = {"rankme": float(rankme(z.float().cpu())), "rank_representation": int(count_above(rep_cov, rel_threshold))}
    for out, value in outputs.items():
        cov = covariance_spectrum(value.float().cpu())
        spectra[f"{out}_cov"] = cov.tolist()
        scalars[f"rank_{out}"] = int(count_above(cov, rel_threshold))
    for name in matrix_names(method):
        s = torch.tensor(spectra[name])
        scalars[f"rank_{name}"] = int(count_above(s, rel_threshold))
    return scalars, spectra


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
