"""Sweeps: outputs, resumability, failure isolation; the strength, config, methods and grid axes;
re-tabulating the committed sweeps."""

import csv
import json
import shutil
from pathlib import Path

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
    assert {(r["strength"], r["method"], r["werank"], r["label"], r["seed"]) for r in rows} == {
        (s, "bgrl", w, lab, d) for s in ("0.0", "1.0") for w, lab in (("False", "BGRL"), ("True", "BGRL + WERank"))
        for d in ("0", "1")
    }
    assert {r["cell"] for r in rows} == {f"s{s}_{m}_seed{d}" for s in (0, 1) for m in ("bgrl", "bgrl-werank") for d in (0, 1)}
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
    for label in ("BGRL", "BGRL + WERank"):
        means = {lr: np.mean([float(r["val_mean"]) for r in rows if r["label"] == label and r["optim.lr"] == lr])
                 for lr in ("0.01", "0.03")}
        assert all(np.isfinite(list(means.values())))
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


# --------------------------------------------------------------------------------------------------
# The config axis, the optional strength axis, methods entries, validation
# --------------------------------------------------------------------------------------------------


def _run_config(tmp_path, name, **cfg):
    """A tiny run config file (csbm, 4 epochs): the sweep tests' stand-in for configs/cora-<method>.yaml."""
    path = tmp_path / f"{name}.yaml"
    data = {"name": name}
    data.update(cfg)
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _tiny(tmp_path, **extra):
    """A sweep over the tiny run configs: no strength axis, no methods unless given."""
    cfg = {"name": "tiny", "out_dir": str(tmp_path / "sweeps"), "seeds": [0],
           "overrides": TINY + ["train.epochs=4", "checkpoint.every=2", "eval.num_splits=2"]}
    cfg.update(extra)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_config_axis_without_strength(tmp_path, capsys):
    a = _run_config(tmp_path, "tiny-a")
    b = _run_config(tmp_path, "tiny-b", augment=[{"edge_drop_p": 0.1, "feat_mask_p": 0.1}, {"edge_drop_p": 0.3, "feat_mask_p": 0.2}])
    path = _tiny(tmp_path, grid={"config": [a, b], "werank.enabled": [False, True]})
    sweep = sweep_mod.load_sweep(path)
    assert sweep.strength is None and sweep.methods is None
    cells = sweep_mod.make_cells(sweep)
    assert [c.name for c in cells] == ["tiny-a_werank-off_seed0", "tiny-a_werank-on_seed0",
                                       "tiny-b_werank-off_seed0", "tiny-b_werank-on_seed0"]
    assert [c.base for c in cells] == [a, a, b, b] and all(c.views is None for c in cells)
    assert not any(o.startswith(("augment.", "config=")) for c in cells for o in c.overrides())
    assert sweep_mod.main(["--config", str(path)]) == 0
    folder = tmp_path / "sweeps" / "tiny"
    rows = _rows(folder)
    assert [(r["config"], r["werank"], r["label"], r["strength"]) for r in rows] == [
        (a, "False", "BGRL", ""), (a, "True", "BGRL + WERank", ""), (b, "False", "BGRL", ""), (b, "True", "BGRL + WERank", "")]
    assert {r["method"] for r in rows} == {"bgrl"} and {r["status"] for r in rows} == {"done"}
    # each cell ran its own config file: its saved config has the file's name and views
    for r in rows:
        saved = yaml.safe_load((folder / "cells" / r["cell"] / "config.yaml").read_text())
        assert saved["name"] == ("tiny-a" if r["config"] == a else "tiny-b")
        assert [saved["augment"][1]["edge_drop_p"], float(r["edge_drop_p_2"])] == [0.4, 0.4] if r["config"] == a else [0.3, 0.3]
    summary = (folder / "summary.md").read_text()
    table = [line for line in summary.splitlines() if line.startswith("|")]
    assert table[0] == ("| views (p_edge, p_feat) | config | BGRL acc | +WERank acc | Δ acc | BGRL RankMe | +WERank RankMe "
                        "| Δ RankMe | seeds |")  # no strength column; werank.enabled pairs the columns
    assert [line.split(" | ")[1] for line in table[2:]] == ["tiny-a", "tiny-b"]  # the config axis by file stem, in order
    assert all(line.endswith("| 1 / 1 |") for line in table[2:])
    for fig in ("accuracy_by_setting.png", "rankme_by_setting.png"):  # no strength axis: bars, not lines
        assert (folder / fig).stat().st_size > 1000
    assert not (folder / "accuracy_vs_strength.png").exists()
    # --summarize rewrites the outputs and runs nothing
    (folder / "summary.md").unlink()
    shutil.rmtree(folder / "cells" / cells[0].name)
    capsys.readouterr()
    assert sweep_mod.main(["--config", str(path), "--summarize"]) == 1  # one cell missing now
    assert not (folder / "cells" / cells[0].name).exists()
    assert f"1 cell(s) not finished: {cells[0].name} (missing)" in (folder / "summary.md").read_text()


def test_config_axis_with_strength_scales_each_configs_views(tmp_path):
    a = _run_config(tmp_path, "a")
    b = _run_config(tmp_path, "b", augment=[{"edge_drop_p": 0.1, "feat_mask_p": 0.1}, {"edge_drop_p": 0.3, "feat_mask_p": 0.2}])
    path = _tiny(tmp_path, strength={"scale": [0.5, 2.0]}, methods=["bgrl+werank"], grid={"config": [a, b], "optim.lr": [0.01]})
    cells = sweep_mod.make_cells(sweep_mod.load_sweep(path))
    assert [c.name for c in cells] == ["s0.5_bgrl-werank_a_lr0.01_seed0", "s0.5_bgrl-werank_b_lr0.01_seed0",
                                       "s2_bgrl-werank_a_lr0.01_seed0", "s2_bgrl-werank_b_lr0.01_seed0"]
    assert [c.views for c in cells] == [[[0.1, 0.15], [0.2, 0.2]], [[0.05, 0.05], [0.15, 0.1]],
                                        [[0.4, 0.6], [0.8, 0.8]], [[0.2, 0.2], [0.6, 0.4]]]
    assert all(c.werank and c.method_name == "bgrl" and c.label == "BGRL + WERank" for c in cells)
    assert "werank.enabled=true" in cells[0].overrides() and "optim.lr=0.01" in cells[0].overrides()


def test_summary_pairs_cells_by_method_and_plots_label_lines(tmp_path):
    """summary.md and the figures from hand-made rows of two methods (no training): one row per
    method and setting with its WERank pair, lines labelled by method + WERank."""
    rows = []
    for method in ("bgrl", "grace"):
        for werank in (False, True):
            for s in (0.0, 1.0):
                for seed in (0, 1):
                    rows.append({"cell": f"{method}{werank}{s}{seed}", "strength": s, "edge_drop_p_1": s * 0.2, "feat_mask_p_1": 0.0,
                                 "edge_drop_p_2": 0.0, "feat_mask_p_2": 0.0, "method": method, "werank": werank,
                                 "label": sweep_mod.run_label(method, werank), "seed": seed, "status": "done",
                                 "accuracy_mean": 0.7 + 0.01 * seed + (0.02 if werank else 0) + (0.1 if method == "grace" else 0),
                                 "rankme": 10.0 + (5 if werank else 0)})
    text = sweep_mod.summarize(rows, [], "two")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0].startswith("| method | strength | views (p_edge, p_feat) | acc | +WERank acc | Δ acc | RankMe |")
    assert "Δ = <method> + WERank − <method>" in text
    body = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    assert [(r[0], r[1]) for r in body] == [("BGRL", "0"), ("BGRL", "1"), ("GRACE", "0"), ("GRACE", "1")]
    assert body[2][3:] == ["80.50 ± 0.50", "82.50 ± 0.50", "+2.00", "10.00 ± 0.00", "15.00 ± 0.00", "+5.0", "2 / 2"]
    assert sweep_mod._line_label("grace", True, ["config", "werank.alpha"], ("x/cora-grace.yaml", "0.1")) == \
        "GRACE + WERank (cora-grace, alpha=0.1)"
    outs = sweep_mod.plot(rows, tmp_path, [])
    assert [p.name for p in outs] == ["accuracy_vs_strength.png", "rankme_vs_strength.png"]
    one = [r for r in rows if r["strength"] == 1.0]  # a single strength: bars, not lines
    assert [p.name for p in sweep_mod.plot(one, tmp_path, [])] == ["accuracy_by_setting.png", "rankme_by_setting.png"]


def test_methods_entries(tmp_path):
    assert sweep_mod.parse_method("bgrl") == ("bgrl", False)
    assert sweep_mod.parse_method("cca_ssg+werank") == ("cca_ssg", True)
    for bad in ("bgrl+foo", "+werank", "grace+werank+x"):
        with pytest.raises(ConfigError, match="<method>\\+werank"):
            sweep_mod.parse_method(bad)
    path = _tiny(tmp_path, methods=["bgrl", "bgrl+werank"], grid={"optim.lr": [0.01, 0.02]})
    cells = sweep_mod.make_cells(sweep_mod.load_sweep(path))
    assert [c.name for c in cells] == ["bgrl_lr0.01_seed0", "bgrl-werank_lr0.01_seed0", "bgrl_lr0.02_seed0", "bgrl-werank_lr0.02_seed0"]
    assert [c.werank for c in cells] == [False, True, False, True]
    assert "method.name=bgrl" in cells[1].overrides() and "werank.enabled=true" in cells[1].overrides()


def test_methods_entries_set_method_name(tmp_path):
    path = _tiny(tmp_path, methods=["grace", "cca_ssg+werank"])
    cells = sweep_mod.make_cells(sweep_mod.load_sweep(path))
    assert [(c.name, c.method_name, c.werank, c.label) for c in cells] == [
        ("grace_seed0", "grace", False, "GRACE"), ("cca_ssg-werank_seed0", "cca_ssg", True, "CCA-SSG + WERank")]
    assert "method.name=grace" in cells[0].overrides() and "werank.enabled=false" in cells[0].overrides()
    # the grid may set the method itself (no methods list), and a config file may name it
    g = _run_config(tmp_path, "g", method={"name": "gbt"})
    path = _tiny(tmp_path, grid={"config": [g], "werank.enabled": [True]})
    (cell,) = sweep_mod.make_cells(sweep_mod.load_sweep(path))
    assert (cell.name, cell.label) == ("g_werank-on_seed0", "G-BT + WERank")
    path = _tiny(tmp_path, grid={"method.name": ["bgrl", "vicreg"]})
    assert [(c.name, c.label) for c in sweep_mod.make_cells(sweep_mod.load_sweep(path))] == [
        ("bgrl_seed0", "BGRL + WERank"), ("vicreg_seed0", "VICReg + WERank")]  # werank.enabled: the default
    with pytest.raises(ConfigError, match="methods: entry 'simclr'"):
        sweep_mod.load_sweep(_tiny(tmp_path, methods=["simclr"]))
    with pytest.raises(ConfigError, match="method.name"):
        sweep_mod.load_sweep(_tiny(tmp_path, grid={"method.name": ["simclr"]}))


def test_methods_entries_run_another_method(tmp_path):
    """Two tiny GRACE cells (grace, grace+werank): what ran is in results.csv, summary.md and the
    results table, labelled GRACE and GRACE + WERank."""
    from bgrl_werank.results import collect, table

    path = _tiny(tmp_path, methods=["grace", "grace+werank"], overrides=TINY + ["train.epochs=3", "eval.num_splits=2"])
    assert sweep_mod.main(["--config", str(path)]) == 0
    folder = tmp_path / "sweeps" / "tiny"
    rows = _rows(folder)
    assert [(r["cell"], r["method"], r["werank"], r["label"], r["status"]) for r in rows] == [
        ("grace_seed0", "grace", "False", "GRACE", "done"), ("grace-werank_seed0", "grace", "True", "GRACE + WERank", "done")]
    assert "| GRACE acc | +WERank acc |" in (folder / "summary.md").read_text()
    assert "Δ = GRACE + WERank − GRACE" in (folder / "summary.md").read_text()
    (row,) = [line for line in table(collect([folder / "cells"])).splitlines()[2:] if line.startswith("|")]
    assert row.split(" | ")[3] == "GRACE" and row.split(" | ")[9] == "1 / 1"


def test_every_config_file_and_combination_is_checked_first(tmp_path, monkeypatch):
    ok = _run_config(tmp_path, "ok")
    monkeypatch.setattr(sweep_mod, "_run_cell", lambda *a: pytest.fail("nothing may run"))

    def err(**extra):
        with pytest.raises(ConfigError) as e:
            sweep_mod.load_sweep(_tiny(tmp_path, **extra))
        assert "\n" not in str(e.value)
        return str(e.value)

    missing = str(tmp_path / "configs" / "cora-gbt.yaml")
    assert err(grid={"config": [ok, missing]}).startswith(f"grid.config: run config '{missing}' not found")
    assert err(base=missing).startswith(f"base: run config '{missing}' not found")
    broken = _run_config(tmp_path, "broken", optim={"lrr": 0.1})
    msg = err(grid={"config": [ok, broken]})
    assert broken in msg and "optim.lrr" in msg
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("a: [1,\n")
    assert err(grid={"config": [str(bad_yaml)]}).startswith("grid.config: config file")
    # a combination that only fails with one grid value, under one config file
    four, short = _run_config(tmp_path, "four", train={"epochs": 4}), _run_config(tmp_path, "short", train={"epochs": 3})
    no_epochs = [o for o in TINY if not o.startswith("train.epochs")]
    msg = err(grid={"config": [four, short], "optim.warmup_epochs": [1, 3]}, overrides=no_epochs)
    assert "cell short_warmup_epochs3_seed0" in msg and short in msg and "optim.warmup_epochs" in msg
    other = tmp_path / "other"
    other.mkdir()
    same_stem = _run_config(other, "ok")
    assert "share the folder name 'ok_seed0'" in err(grid={"config": [ok, same_stem]})
    assert "grid.config must list run-config YAML files" in err(grid={"config": [1]})
    assert "both set werank.enabled" in err(methods=["bgrl"], grid={"werank.enabled": [True]})
    assert "grid.seed" in err(grid={"seed": [1, 2]})
    assert "strength axis sets the views" in err(strength={"scale": [1.0]}, grid={"augment.0.edge_drop_p": [0.1]})
    assert "exactly one of 'scale'" in err(strength={})
    assert "strength.scale is empty" in err(strength={"scale": []})
    assert "strength.explicit.0" in err(strength={"explicit": [[[0.1, 0.2]]]})
    assert "methods is empty" in err(methods=[])
    assert "listed twice" in err(methods=["bgrl", "bgrl"])
    # the views themselves are validated as any config value
    assert "augment.1.feat_mask_p" in err(strength={"explicit": [[[0.1, 0.2], [0.1, 1.5]]]})
    # explicit null: no strength axis; a grid over the views is then allowed
    cells = sweep_mod.make_cells(sweep_mod.load_sweep(_tiny(tmp_path, strength=None, grid={"augment.0.edge_drop_p": [0.1],
                                                                                           "augment.1.edge_drop_p": [0.5]})))
    assert [c.name for c in cells] == ["augment-0-edge_drop_p0.1_augment-1-edge_drop_p0.5_seed0"]
    assert cells[0].run_views == [[0.1, 0.3], [0.5, 0.4]]


COMMITTED = ["cora", "citeseer", "amazon-photo", "citeseer-search-bgrl", "citeseer-search-werank"]


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_sweep_configs_name_their_committed_cells(name):
    """The shipped sweep configs still make exactly the cells kept in results/sweeps (so a re-run
    there re-tabulates, never re-trains)."""
    from .conftest import ROOT

    with pytest.MonkeyPatch.context() as m:
        m.chdir(ROOT)
        cells = sweep_mod.make_cells(sweep_mod.load_sweep(f"configs/sweeps/{name}.yaml"))
    kept = {p.name for p in (ROOT / "results" / "sweeps" / name / "cells").iterdir()}
    assert {c.name for c in cells} == kept
    old = {r["cell"]: r for r in _rows(ROOT / "results" / "sweeps" / name)}
    for c in cells:  # the methods entry of the old results.csv is what the cell resolves to
        assert (c.method_name, c.werank) == ("bgrl", old[c.name]["method"] == "bgrl+werank")


def test_committed_cora_sweep_summarizes_as_committed(tmp_path, capsys):
    """--summarize on a copy of results/sweeps/cora (old results.csv, reports without "method"):
    the same summary.md as committed, the figures, and a results.csv with method, werank and label."""
    from .conftest import ROOT

    shutil.copytree(ROOT / "results" / "sweeps" / "cora", tmp_path / "cora")
    (tmp_path / "cora" / "summary.md").unlink()
    with pytest.MonkeyPatch.context() as m:
        m.chdir(ROOT)
        assert sweep_mod.main(["--config", "configs/sweeps/cora.yaml", "--out", str(tmp_path), "--summarize"]) == 0
    assert (tmp_path / "cora" / "summary.md").read_text() == (ROOT / "results" / "sweeps" / "cora" / "summary.md").read_text()
    assert (tmp_path / "cora" / "accuracy_vs_strength.png").stat().st_size > 1000
    rows = _rows(tmp_path / "cora")
    assert len(rows) == 30 and {(r["method"], r["werank"], r["label"]) for r in rows} == {
        ("bgrl", "False", "BGRL"), ("bgrl", "True", "BGRL + WERank")}


def test_select_reads_old_and_new_results(tmp_path, capsys):
    """select groups by method + WERank: from the committed (old-format) results.csv of the CiteSeer
    searches, and from new-format rows with a non-BGRL method."""
    from bgrl_werank import select

    from .conftest import ROOT

    old = [str(ROOT / "results" / "sweeps" / n) for n in ("citeseer-search-bgrl", "citeseer-search-werank")]
    capsys.readouterr()
    assert select.main(old) == 0
    text = capsys.readouterr().out
    assert sum(line.startswith("| **BGRL** |") for line in text.splitlines()) == 1
    assert sum(line.startswith("| **BGRL + WERank** |") for line in text.splitlines()) == 1
    rows = [{"cell": f"c{i}", "method": m, "werank": str(w), "label": sweep_mod.run_label(m, w), "alpha": "0.01",
             "edge_drop_p_1": "0.2", "feat_mask_p_1": "0.3", "edge_drop_p_2": "0.4", "feat_mask_p_2": "0.4",
             "val_mean": str(v), "accuracy_mean": "0.8", "seed": "0", "optim.lr": lr, "_cell_dir": ""}
            for i, (m, w, lr, v) in enumerate([("grace", False, "0.01", 0.7), ("grace", False, "0.02", 0.75),
                                               ("grace", True, "0.01", 0.8), ("bgrl", False, "0.01", 0.6)])]
    lines = select.table(rows, ["optim.lr"]).splitlines()[2:]
    assert [line.split(" | ")[0].strip("| *") for line in lines] == ["BGRL", "GRACE", "GRACE", "GRACE + WERank"]
    assert "| **GRACE** | **(0.2, 0.3) / (0.4, 0.4)** | **—** | **0.02** |" in "\n".join(lines)


def test_methods_cora_sweep_config():
    """configs/sweeps/methods-cora.yaml: 5 methods' configs × WERank off/on × 5 seeds, no strength axis
    (checked in full once every per-method config file exists)."""
    from .conftest import ROOT

    data = yaml.safe_load((ROOT / "configs" / "sweeps" / "methods-cora.yaml").read_text())
    files = data["grid"]["config"]
    assert [Path(f).stem for f in files] == ["cora", "cora-grace", "cora-gbt", "cora-cca_ssg", "cora-vicreg"]
    assert data["grid"]["werank.enabled"] == [False, True] and data["seeds"] == [0, 1, 2, 3, 4]
    assert "strength" not in data and "methods" not in data
    missing = [f for f in files if not (ROOT / f).is_file()]
    if missing:
        pytest.skip(f"not all of its run configs exist yet ({', '.join(missing)})")
    with pytest.MonkeyPatch.context() as m:
        m.chdir(ROOT)
        cells = sweep_mod.make_cells(sweep_mod.load_sweep("configs/sweeps/methods-cora.yaml"))
    assert len(cells) == 50 and len({c.name for c in cells}) == 50
    assert {c.label for c in cells} == {sweep_mod.run_label(m, w) for m in ("bgrl", "grace", "gbt", "cca_ssg", "vicreg")
                                        for w in (False, True)}
    assert all(c.views is None and c.strength is None for c in cells)
