"""Rank diagnostics during training: scalars in metrics.jsonl, spectra file, figures."""

import json

from bgrl_werank.cli import train_main
from bgrl_werank.plots import plot_compare

from .conftest import TINY, sets


def test_diagnostics_recorded_and_plotted(tmp_path):
    runs = []
    for name, werank in (("base", "false"), ("reg", "true")):
        run = tmp_path / name
        assert train_main(sets(TINY + ["diagnostics.every=4", f"werank.enabled={werank}"]) + ["--run-dir", str(run)]) == 0
        runs.append(run)
        spectra = [json.loads(line) for line in (run / "spectra.jsonl").read_text().splitlines()]
        assert [s["epoch"] for s in spectra] == [1, 4, 8, 12]
        last = spectra[-1]
        assert len(last["encoder.0"]) == 24 and len(last["encoder.1"]) == 16  # min(out, in)
        assert len(last["predictor.0"]) == 16 and len(last["representation_cov"]) == 16
        assert all(a >= b for a, b in zip(last["encoder.0"], last["encoder.0"][1:]))
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        diag = [m for m in metrics if "rankme" in m]
        assert [m["epoch"] for m in diag] == [1, 4, 8, 12]
        assert all(0 < m["rankme"] <= 16 and 0 <= m["rank_representation"] <= 16 for m in diag)
        assert (run / "spectra.png").stat().st_size > 1000
        report = json.loads((run / "report.json").read_text())
        assert 0 < report["rankme"] <= 16
    out = plot_compare(runs, ["BGRL", "BGRL+WERank"], tmp_path / "compare.png")
    assert out.stat().st_size > 1000
