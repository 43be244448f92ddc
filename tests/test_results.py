"""The README's results table is computed from run reports: check its arithmetic on known values."""

import json

import pytest

from bgrl_werank.results import collect, main, table


def _report(folder, dataset, werank, acc, rankme, seed):
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps({
        "dataset": dataset, "protocol": "public", "werank": werank, "werank_alpha": 0.3 if werank else 0.0,
        "accuracy_mean": acc, "rankme": rankme, "seed": seed, "hyperparameters": {"epochs": 150},
    }))


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
    # no config.yaml in these folders: config "—"
    assert cells[:6] == ["citeseer", "public", "—", "69.00 ± 0.82", "72.00 ± 0.82", "+3.00"]
    assert cells[6:] == ["0.3", "150", "3 / 3", "11.0 / 20.0", "—"]  # no metrics.jsonl: no diagnostics share


def test_runs_of_different_configs_are_different_rows(tmp_path):
    # the same dataset under two configs (e.g. each method's own tuned one): one row each, by config name
    for name, werank, acc in (("citeseer", True, 0.72), ("citeseer", False, 0.70), ("citeseer-bgrl", False, 0.69)):
        run = tmp_path / name / str(werank)
        _report(run, "citeseer", werank, acc, 10.0, 0)
        (run / "config.yaml").write_text(f"name: {name}\n")
    text = table(collect([tmp_path]))
    rows = [[c.strip() for c in r.strip("|").split("|")] for r in text.splitlines()[2:4]]
    assert [r[:6] for r in rows] == [["citeseer", "public", "citeseer", "70.00 ± 0.00", "72.00 ± 0.00", "+2.00"],
                                    ["citeseer", "public", "citeseer-bgrl", "69.00 ± 0.00", "—", "—"]]
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
    row = table(collect([tmp_path])).splitlines()[2]
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
