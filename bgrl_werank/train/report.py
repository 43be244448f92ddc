"""Run reports: ``report.json`` (machine-readable) and ``report.md`` (paste-able)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import Config, to_dict
from ..labels import report_method, run_label
from ..rundir import atomic_write_text, json_safe


def build_report(cfg: Config, probe: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report dict: dataset, protocol, per-split and mean ± std accuracy, key hyperparameters."""
    report = {
        "dataset": cfg.data.name,
        "method": cfg.method.name,
        "encoder": cfg.model.encoder,
        "protocol": cfg.eval.protocol,
        "num_splits": len(probe["test_acc"]),
        "accuracy_mean": probe["mean"],
        "accuracy_std": probe["std"],
        "test_acc": probe["test_acc"],
        "val_acc": probe.get("val_acc"),
        "best_c": probe.get("best_c"),
        "probe_backend": probe.get("backend"),
        "probe_seconds": probe.get("seconds"),
        "werank": cfg.werank.enabled,
        "werank_alpha": cfg.werank.alpha if cfg.werank.enabled else 0.0,
        "seed": cfg.seed,
        "hyperparameters": {
            "layer_sizes": cfg.model.layer_sizes,
            "norm": cfg.model.norm,
            "activation": cfg.model.activation,
            "method": to_dict(getattr(cfg.method, cfg.method.name)) if hasattr(cfg.method, cfg.method.name) else {},
            "epochs": cfg.train.epochs,
            "optimizer": cfg.optim.optimizer,
            "lr": cfg.optim.lr,
            "weight_decay": cfg.optim.weight_decay,
            "schedule": cfg.optim.schedule,
            "warmup_epochs": cfg.optim.warmup_epochs,
            "augment": [[v.edge_drop_p, v.feat_mask_p] for v in cfg.augment],
            "werank_include_heads": cfg.werank.include_heads,
            "batchnorm_momentum": cfg.model.batchnorm_momentum,
        },
        "eval_batchnorm": _batchnorm_statistics(cfg),
    }
    report.update(extra or {})
    return report


def _batchnorm_statistics(cfg: Config) -> str:
    """What the probe's eval-mode BatchNorm statistics are, in words."""
    if cfg.model.norm != "batch":
        return f"none (model.norm = {cfg.model.norm})"
    if cfg.eval.batchnorm == "views":
        return f"re-estimated over {cfg.eval.batchnorm_views} training views"
    return f"running (momentum {cfg.model.batchnorm_momentum}, PyTorch convention: weight of the new batch)"


def report_markdown(report: dict[str, Any]) -> str:
    """A short Markdown report a researcher can paste."""
    hp = report["hyperparameters"]
    method = run_label(report_method(report), bool(report["werank"]))
    lines = [
        f"# Linear evaluation: {report['dataset']} ({method})",
        "",
        f"**Test accuracy: {100 * report['accuracy_mean']:.2f} ± {100 * report['accuracy_std']:.2f}** "
        f"(mean ± std over {report['num_splits']} split(s), protocol `{report['protocol']}`, seed {report['seed']})",
        "",
        "| setting | value |",
        "|---|---|",
        f"| method | {method} |",
        f"| WERank alpha | {report['werank_alpha'] if report['werank'] else 'off'} |",
        f"| encoder | {report.get('encoder', 'gcn')} {hp['layer_sizes']}"
        + (f", {hp['norm']} norm, {hp['activation']}" if "norm" in hp else "") + " |",
        *_method_rows(hp),
        f"| epochs (warmup) | {_epochs(report)} ({hp['warmup_epochs']}) |" if hp.get("schedule", "warmup_cosine") == "warmup_cosine"
        else f"| epochs (constant lr) | {_epochs(report)} |",
        f"| {hp.get('optimizer', 'adamw')}: lr / weight decay | {hp['lr']} / {hp['weight_decay']} |",
        f"| views (edge_drop_p, feat_mask_p) | {hp['augment'][0]}, {hp['augment'][1]} |",
        f"| probe | {report['probe_backend']}, {report['probe_seconds']:.2f} s |",
    ]
    if "eval_batchnorm" in report:  # reports written before 2026-12-01 lack it
        lines.append(f"| eval-mode BatchNorm statistics | {report['eval_batchnorm']} |")
    if "rankme" in report:
        lines.append(f"| RankMe of representations | {report['rankme']:.1f} of {hp['layer_sizes'][-1]} |")
    if "train_seconds" in report:
        lines.append(f"| pretraining wall time | {report['train_seconds']:.1f} s |")
    for r in report.get("resumes") or []:
        changed = "; ".join(f"{k} {a} → {b}" for k, (a, b) in r["changed"].items())
        lines.append(f"| resumed at epoch {r['at_epoch']} with | {changed} |")
    if report["num_splits"] > 1:
        accs = ", ".join(f"{100 * a:.2f}" for a in report["test_acc"])
        lines += ["", f"Per-split test accuracy (%): {accs}"]
    return "\n".join(lines) + "\n"


def _epochs(report: dict[str, Any]) -> str:
    """The configured epochs, or "T of E" for a checkpoint taken before its run finished."""
    total, done = report["hyperparameters"]["epochs"], report.get("epochs_trained")
    return f"{done} of {total}" if done is not None and done != total else f"{total}"


def _method_rows(hp: dict[str, Any]) -> list[str]:
    """The method's own hyperparameters (reports written before methods: BGRL's two)."""
    if "method" not in hp:
        return [f"| predictor hidden | {hp['predictor_hidden']} |", f"| EMA momentum m0 | {hp['momentum']} |"]
    return [f"| {key} | {value} |" for key, value in hp["method"].items()]


def write_report(report: dict[str, Any], folder: str | Path, exclusive: bool = False,
                 written: list[Path] | None = None) -> None:
    """``report.json`` (strict JSON: a non-finite number is written as null) and ``report.md``, each
    written whole (temporary file, rename). ``exclusive``: never replace an existing report (a
    FileExistsError instead); ``written`` collects the files this call created."""
    folder = Path(folder)
    for name in ("report.json", "report.md"):
        if (folder / name).is_dir():
            raise IsADirectoryError(21, "a folder stands where the report goes", str(folder / name))
    texts = {"report.json": json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n",
             "report.md": report_markdown(report)}
    for name, text in texts.items():
        atomic_write_text(folder / name, text, exclusive=exclusive)
        if written is not None:
            written.append(folder / name)
