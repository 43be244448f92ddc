"""The README's results table is computed from run reports: check its arithmetic on known values,
for BGRL's old reports (no "method" key) and for other methods; the plots' run labels."""

import json

import pytest

from bgrl_werank.results import collect, main, table


def _report(folder, dataset, werank, acc, rankme, seed, method=None):
    """A hand-written report.json; ``method=None`` writes one as before there were other methods (no key)."""
    folder.mkdir(parents=True)
    report = {
        "dataset": dataset, "protocol": "public", "werank": werank, "werank_alpha": 0.3 if werank else 0.0,
        "accuracy_mean": acc, "rankme": rankme, "seed": seed, "hyperparameters": {"epochs": 150},
    }
    if method is not None:
        report["method"] = method
    (folder / "report.json").write_text(json.dumps(report))


def _cells(line):
    return [c.strip() for c in line.strip("|").split("|")]


def test_table_means_stds_and_difference(tmp_path):
    for seed, (a, b) in enumerate([(0.70, 0.72), (0.68, 0.71), (0.69, 0.73)]):
        _report(tmp_path / f"base/seed{seed}", "citeseer", False, a, 10.0 + seed, seed)
        _report(tmp_path / f"reg/seed{seed}", "citeseer", True, b, 20.0, seed)
    # an eval.py re-evaluation below a run folder is not a second run
    _report(tmp_path / "reg/seed0/eval/x", "citeseer", True, 0.10, 1.0, 0)
    reports = collect([tmp_path])
    assert len(reports) == 6
    row = table(reports).splitlines()[2]
    cells = [c.strip() for c in row.strip("|").split("|")]
    # BGRL: mean 69.00, population std sqrt(2/3) = 0.82; WERank: 72.00 ± 0.82; difference +3.00
    # no config.yaml in these folders: config "—"; no "method" in the reports: BGRL
    assert cells[:7] == ["citeseer", "public", "—", "BGRL", "69.00 ± 0.82", "72.00 ± 0.82", "+3.00"]
    assert cells[7:] == ["0.3", "150", "3 / 3", "11.0 / 20.0", "—"]  # no metrics.jsonl: no diagnostics share
    assert "published" not in table(reports)  # nothing published for CiteSeer in PUBLISHED


def test_runs_of_different_configs_are_different_rows(tmp_path):
    # the same dataset under two configs (e.g. each method's own tuned one): one row each, by config name
    for name, werank, acc in (("citeseer", True, 0.72), ("citeseer", False, 0.70), ("citeseer-bgrl", False, 0.69)):
        run = tmp_path / name / str(werank)
        _report(run, "citeseer", werank, acc, 10.0, 0)
        (run / "config.yaml").write_text(f"name: {name}\n")
    text = table(collect([tmp_path]))
    rows = [[c.strip() for c in r.strip("|").split("|")] for r in text.splitlines()[2:4]]
    assert [r[:7] for r in rows] == [["citeseer", "public", "citeseer", "BGRL", "70.00 ± 0.00", "72.00 ± 0.00", "+2.00"],
                                    ["citeseer", "public", "citeseer-bgrl", "BGRL", "69.00 ± 0.00", "—", "—"]]
    # and the comparison of each method under its own config, WERank's against the other config's BGRL
    assert text.splitlines()[-1] == ("Across configs, citeseer (public): BGRL + WERank (citeseer) − BGRL (citeseer-bgrl) = "
                                     "+3.00 points (72.00 ± 0.00 vs 69.00 ± 0.00, 1 / 1 seeds).")


def test_diagnostics_share_from_metrics(tmp_path):
    from bgrl_werank.results import diagnostics_share

    run = tmp_path / "run"
    _report(run, "cora", True, 0.8, 100.0, 0)
    # 4 epochs, every other one logged at 0.5 s; two diagnostics collections of 0.1 s and 0.3 s
    rows = [{"epoch": 2, "epoch_time_s": 0.5, "rankme": 1.0, "diagnostics_time_s": 0.1},
            {"epoch": 4, "epoch_time_s": 0.5, "rankme": 1.0, "diagnostics_time_s": 0.3}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert diagnostics_share(run) == pytest.approx(0.4 / 2.0)
    row = table(collect([tmp_path]), published=False).splitlines()[2]
    assert row.rstrip().endswith("| 20.0 % |")


def test_update_replaces_only_the_marked_block(tmp_path, capsys):
    _report(tmp_path / "runs/a", "cora", True, 0.82, 150.0, 0)
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- results:begin -->\nold\n<!-- results:end -->\nafter\n")
    assert main([str(tmp_path / "runs"), "--update", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("before\n<!-- results:begin -->\n| dataset |") and text.endswith("<!-- results:end -->\nafter\n")
    assert "old" not in text and "82.00 ± 0.00" in text


def test_missing_markers_and_empty_folder_are_errors(tmp_path):
    assert main([str(tmp_path)]) == 2
    _report(tmp_path / "runs/a", "cora", True, 0.82, 150.0, 0)
    (tmp_path / "R.md").write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        main([str(tmp_path / "runs"), "--update", str(tmp_path / "R.md")])


def test_methods_are_rows_with_published_references(tmp_path, capsys):
    """Reports with a "method" (GRACE, G-BT) next to old BGRL reports without one, on Cora's public
    split: one row per method, without / with WERank side by side, and the published numbers where
    PUBLISHED has them (BGRL, GRACE), with our means minus them."""
    from bgrl_werank.results import PUBLISHED

    for seed, (a, b) in enumerate([(0.80, 0.83), (0.82, 0.83)]):
        _report(tmp_path / f"grace/off/{seed}", "cora", False, a, 50.0, seed, method="grace")
        _report(tmp_path / f"grace/on/{seed}", "cora", True, b, 60.0, seed, method="grace")
        _report(tmp_path / f"bgrl/off/{seed}", "cora", False, 0.82, 40.0, seed)  # old format: BGRL
    _report(tmp_path / "gbt/on/0", "cora", True, 0.79, 70.0, 0, method="gbt")
    text = table(collect([tmp_path]))
    lines = text.splitlines()
    assert lines[0].endswith("| published | ours − published (without / with) |")
    rows = {r[3]: r for r in map(_cells, lines[2:5])}
    assert list(rows) == ["BGRL", "G-BT", "GRACE"]  # sorted by method name: bgrl, gbt, grace
    assert rows["GRACE"][4:7] == ["81.00 ± 1.00", "83.00 ± 0.00", "+2.00"]
    assert rows["GRACE"][-2:] == ["81.9 ± 0.4", "-0.90 / +1.10"]
    assert rows["BGRL"][4:7] == ["82.00 ± 0.00", "—", "—"] and rows["BGRL"][-2:] == ["82.7 ± 0.6", "-0.70 / —"]
    assert rows["G-BT"][4:6] == ["—", "79.00 ± 0.00"] and rows["G-BT"][-2:] == ["—", "—"]  # no published G-BT number
    assert PUBLISHED[("cora", "public")]["cca_ssg"] == (84.0, 0.4)
    assert "published" not in table(collect([tmp_path]), published=False)
    capsys.readouterr()
    assert main([str(tmp_path), "--no-published"]) == 0
    assert "published" not in capsys.readouterr().out


def test_across_configs_pairs_within_a_method(tmp_path):
    for name, method, werank, acc in (("cora-grace", "grace", True, 0.83), ("cora-grace-b", "grace", False, 0.80),
                                      ("cora", "bgrl", False, 0.70)):
        run = tmp_path / name / str(werank)
        _report(run, "cora", werank, acc, 10.0, 0, method=method)
        (run / "config.yaml").write_text(f"name: {name}\n")
    cross = [line for line in table(collect([tmp_path])).splitlines() if line.startswith("Across")]
    assert cross == ["Across configs, cora (public): GRACE + WERank (cora-grace) − GRACE (cora-grace-b) = +3.00 points "
                     "(83.00 ± 0.00 vs 80.00 ± 0.00, 1 / 1 seeds)."]  # never against another method's runs


def test_committed_paper_results_tabulate_as_bgrl():
    """results/paper (reports written before there were other methods): every row BGRL, and the Cora
    row's published column is BGRL's with our means minus it."""
    from .conftest import ROOT

    rows = [_cells(line) for line in table(collect([ROOT / "results" / "paper"])).splitlines()[2:] if line.startswith("|")]
    assert rows and {r[3] for r in rows} == {"BGRL"}
    (cora,) = [r for r in rows if r[0] == "cora"]
    mean = lambda c: float(c.split(" ± ")[0])  # noqa: E731
    assert cora[-2] == "82.7 ± 0.6"
    assert cora[-1] == f"{mean(cora[4]) - 82.7:+.2f} / {mean(cora[5]) - 82.7:+.2f}"


def test_plot_labels_name_the_method(tmp_path):
    import yaml

    from bgrl_werank.plots import _describe, default_labels

    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "data": {"name": "cora"}, "werank": {"enabled": False, "alpha": 0.01}}))
    (new / "config.yaml").write_text(yaml.safe_dump({"seed": 3, "data": {"name": "cora"}, "method": {"name": "cca_ssg"},
                                                     "werank": {"enabled": True, "alpha": 0.01}}))
    assert _describe(old) == "cora, BGRL, seed 0"
    assert _describe(new) == "cora, CCA-SSG + WERank (alpha 0.01), seed 3"
    assert _describe(tmp_path) == tmp_path.name  # no config.yaml: the folder name
    assert default_labels([old, new]) == ["BGRL", "CCA-SSG + WERank"]
    assert default_labels([new, new]) == ["new", "new"]  # the configs cannot tell them apart


def test_compare_table_sets_two_values_of_a_config_key_side_by_side(tmp_path, capsys):
    from bgrl_werank.results import compare_table

    accs = {"full": [0.90, 0.92, 0.91], "subgraph": [0.895, 0.905, 0.885], "other": [0.1]}
    for batching, values in accs.items():
        for seed, acc in enumerate(values):
            run = tmp_path / f"{batching}_seed{seed}"
            _report(run, "coauthor-cs", True, acc, 30.0 + seed, seed, method="grace")
            (run / "config.yaml").write_text(f"name: cs\ntrain:\n  batching: {batching}\n  epochs: 150\n")
            (run / "metrics.jsonl").write_text("\n".join(json.dumps({"epoch": e, "epoch_time_s": t})
                                                        for e, t in enumerate([5.0, 1.0, 2.0])) + "\n")
    text = compare_table(collect([tmp_path]), "train.batching", ("full", "subgraph"), tolerance=1.0)
    header, _, row = text.splitlines()
    assert "train.batching: full | train.batching: subgraph | subgraph − full" in header and header.endswith("within 1 point |")
    # full 91.00 ± 0.82, subgraph 89.50 ± 0.82: −1.50 points, outside 1; the "other" run is in neither column
    assert _cells(row) == ["coauthor-cs", "public", "cs", "GRACE + WERank", "91.00 ± 0.82", "89.50 ± 0.82", "-1.50",
                           "150", "3 / 3", "31.0 / 31.0", "2.00 / 2.00", "**no**"]
    assert main([str(tmp_path), "--compare", "train.batching"]) == 2
    assert "is not KEY=A,B" in capsys.readouterr().err
