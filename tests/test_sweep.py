"""The augmentation-strength sweep: outputs, resumability, failure isolation."""

import csv
import json
import shutil

import pytest
import yaml

from bgrl_werank import sweep as sweep_mod
from bgrl_werank.config import ConfigError

from .conftest import TINY


def _write(tmp_path, **extra):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"name": "tiny"}))
    cfg = {
        "name": "tiny", "out_dir": str(tmp_path / "sweeps"), "base": str(base),
        "overrides": TINY + ["train.epochs=4", "checkpoint.every=2", "eval.num_splits=2"],
        "strength": {"scale": [0.0, 1.0]}, "methods": ["bgrl", "bgrl+werank"], "seeds": [0, 1],
    }
    cfg.update(extra)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _rows(folder):
    with open(folder / "results.csv") as f:
        return list(csv.DictReader(f))


def test_tiny_sweep_outputs_and_resume(tmp_path, monkeypatch):
    path = _write(tmp_path)
    assert sweep_mod.main(["--config", str(path)]) == 0
    folder = tmp_path / "sweeps" / "tiny"
    rows = _rows(folder)
    assert len(rows) == 8
    assert {r["status"] for r in rows} == {"done"}
    assert {(r["strength"], r["method"], r["seed"]) for r in rows} == {
        (s, m, d) for s in ("0.0", "1.0") for m in ("bgrl", "bgrl+werank") for d in ("0", "1")
    }
    zero = [r for r in rows if r["strength"] == "0.0"]
    assert all(float(r["edge_drop_p_1"]) == 0.0 and float(r["feat_mask_p_2"]) == 0.0 for r in zero)
    assert all(r["accuracy_mean"] and r["rankme"] and r["final_loss"] and r["wall_time_s"] for r in rows)
    summary = (folder / "summary.md").read_text()
    assert "BGRL acc" in summary and summary.count("\n| 0 |") + summary.count("\n| 1 |") == 2
    for fig in ("accuracy_vs_strength.png", "rankme_vs_strength.png"):
        assert (folder / fig).stat().st_size > 1000

    # "interrupt": remove two finished cells; a re-run must execute exactly those
    gone = [r["cell"] for r in rows[:2]]
    for c in gone:
        shutil.rmtree(folder / "cells" / c)
    ran = []
    real = sweep_mod._run_cell

    def spy(sweep_dir, cell, *a):
        ran.append(cell.name)
        return real(sweep_dir, cell, *a)

    monkeypatch.setattr(sweep_mod, "_run_cell", spy)
    assert sweep_mod.main(["--config", str(path)]) == 0
    assert sorted(ran) == sorted(gone)
    assert len(_rows(folder)) == 8


def test_failing_cell_recorded_others_continue_and_retried(tmp_path, monkeypatch):
    # alpha list of the wrong length is caught at load time: use a value that only fails at run time instead
    path = _write(tmp_path, seeds=[0])
    real = sweep_mod._run_cell
    calls = []

    def flaky(sweep_dir, cell, *a):
        calls.append(cell.name)
        if cell.method == "bgrl+werank" and cell.strength == 1.0:
            from pathlib import Path

            d = Path(sweep_dir) / "cells" / cell.name
            d.mkdir(parents=True, exist_ok=True)
            (d / "error.txt").write_text("error: simulated failure")
            return {"cell": cell.name, "ok": False, "error": "error: simulated failure", "seconds": 0.0}
        return real(sweep_dir, cell, *a)

    monkeypatch.setattr(sweep_mod, "_run_cell", flaky)
    assert sweep_mod.main(["--config", str(path)]) == 1
    rows = _rows(tmp_path / "sweeps" / "tiny")
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(rows) == 4 and len(failed) == 1 and "simulated failure" in failed[0]["error"]
    assert sum(r["status"] == "done" for r in rows) == 3
    calls.clear()
    monkeypatch.setattr(sweep_mod, "_run_cell", real)
    spy_calls = []
    monkeypatch.setattr(sweep_mod, "_run_cell", lambda d, c, *a: spy_calls.append(c.name) or real(d, c, *a))
    assert sweep_mod.main(["--config", str(path)]) == 0
    assert spy_calls == [failed[0]["cell"]]


def test_grid_axis_and_explicit_strengths(tmp_path):
    path = _write(tmp_path, strength={"explicit": [[[0.0, 0.0], [0.0, 0.0]], [[0.1, 0.2], [0.3, 0.4]]]},
                  methods=["bgrl+werank"], seeds=[0], grid={"werank.alpha": [0.01, 0.1]})
    sweep = sweep_mod.load_sweep(path)
    cells = sweep_mod.make_cells(sweep)
    assert len(cells) == 4
    assert {json.dumps(c.grid) for c in cells} == {'{"werank.alpha": 0.01}', '{"werank.alpha": 0.1}'}
    assert cells[-1].views == [[0.1, 0.2], [0.3, 0.4]]


def test_bad_sweep_configs(tmp_path, capsys):
    with pytest.raises(ConfigError, match="methods"):
        sweep_mod.load_sweep(_write(tmp_path, methods=["simclr"]))
    with pytest.raises(ConfigError, match="werank.alpha"):
        sweep_mod.load_sweep(_write(tmp_path, grid={"werank.alpha": [-1.0]}))
    assert sweep_mod.main(["--config", str(_write(tmp_path, strength={"scale": [-1.0]}))]) == 2
    assert "strength.scale" in capsys.readouterr().err


def test_out_flag_puts_the_sweep_elsewhere(tmp_path):
    path = _write(tmp_path, strength={"scale": [1.0]}, methods=["bgrl"], seeds=[0])
    other = tmp_path / "elsewhere"
    assert sweep_mod.main(["--config", str(path), "--out", str(other)]) == 0
    assert _rows(other / "tiny")[0]["status"] == "done"
    assert not (tmp_path / "sweeps").exists()  # the YAML's out_dir is left alone


def test_select_chooses_on_validation_accuracy(tmp_path, capsys):
    """``bgrl_werank.select``: settings = cells without their seed; the chosen one has the highest
    mean validation accuracy (computed here from the cells' own reports), the test column plays no part."""
    import numpy as np

    from bgrl_werank import select

    path = _write(tmp_path, strength={"scale": [1.0]}, grid={"optim.lr": [0.01, 0.03]})
    assert sweep_mod.main(["--config", str(path)]) == 0
    folder = tmp_path / "sweeps" / "tiny"
    rows = _rows(folder)
    for r in rows:  # results.csv carries each cell's mean validation accuracy
        report = json.loads((folder / "cells" / r["cell"] / "report.json").read_text())
        assert float(r["val_mean"]) == pytest.approx(np.mean(report["val_acc"]))
    capsys.readouterr()
    assert select.main([str(folder)]) == 0
    text = capsys.readouterr().out
    for method, label in (("bgrl", "BGRL"), ("bgrl+werank", "BGRL + WERank")):
        means = {lr: np.mean([float(r["val_mean"]) for r in rows if r["method"] == method and r["optim.lr"] == lr])
                 for lr in ("0.01", "0.03")}
        bold = [line for line in text.splitlines() if line.startswith(f"| **{label}** |")]
        assert len(bold) == 1 and f"**{max(means, key=means.get)}**" in bold[0]
    # a second sweep without the grid axis: its lr comes from each cell's resolved config
    other = _write(tmp_path, name="other", methods=["bgrl"], strength={"scale": [0.5]})
    assert sweep_mod.main(["--config", str(other)]) == 0
    capsys.readouterr()
    assert select.main([str(folder), str(tmp_path / "sweeps" / "other")]) == 0
    text = capsys.readouterr().out.replace("**", "")
    assert sum(line.startswith("| BGRL") for line in text.splitlines()) == 5
    assert "(0.1, 0.15) / (0.2, 0.2) | — | 0.01 |" in text  # TINY's lr, read from the other sweep's cell configs
    assert select.main([str(tmp_path / "nowhere")]) == 2
    assert "run the sweep first" in capsys.readouterr().err
