"""Acceptance tests of the controlled Gaussian experiments (bgrl_werank.toy).

The paper-length runs are commands (docs/toy.md); these tests use short runs. Reference formulas are
written independently here with numpy and explicit loops.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bgrl_werank.toy.cli import main
from bgrl_werank.toy.config import ConfigError, build_config, load_config
from bgrl_werank.toy.data import gaussian_data, view_noise
from bgrl_werank.toy.losses import info_nce_loss, vicreg_loss
from bgrl_werank.toy.model import LinearNet, embedding_spectrum
from bgrl_werank.toy.train import RunSpec, train_run

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "toy"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def test_data_is_centred_with_identity_covariance():
    x = gaussian_data(1000, 16, torch.Generator().manual_seed(3)).double().numpy()
    assert x.shape == (1000, 16)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(x.T @ x / len(x), np.eye(16), atol=1e-5)


@pytest.mark.parametrize("k", [0.01, 0.1, 2.0])
def test_whitened_view_noise_has_exact_block_covariance(k):
    n = view_noise(1000, 16, 8, k, torch.Generator().manual_seed(0), exact=True).double().numpy()
    expected = np.zeros((16, 16))
    expected[8:, 8:] = k * np.eye(8)
    assert np.all(n[:, :8] == 0.0)  # the first 8 coordinates are never perturbed
    np.testing.assert_allclose(n.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(n.T @ n / len(n), expected, atol=1e-5 * max(1.0, k))


def test_plain_view_noise_matches_block_covariance_statistically():
    k, num = 0.5, 20000
    n = view_noise(num, 16, 8, k, torch.Generator().manual_seed(1), exact=False).double().numpy()
    expected = np.zeros((16, 16))
    expected[8:, 8:] = k * np.eye(8)
    # the standard deviation of an entry of a sample covariance is at most k * sqrt(2 / N)
    np.testing.assert_allclose(n.T @ n / num, expected, atol=6 * k * math.sqrt(2 / num))


def test_noise_is_resampled_every_draw():
    g = torch.Generator().manual_seed(0)
    a, b = view_noise(100, 16, 8, 0.1, g), view_noise(100, 16, 8, 0.1, g)
    assert not torch.equal(a, b)


# --------------------------------------------------------------------------------------------------
# Losses against independent formulas
# --------------------------------------------------------------------------------------------------


def _vicreg_reference(z1, z2, inv_c, var_c, cov_c, eps):
    n, d = z1.shape
    inv = sum((z1[i, j] - z2[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    var_terms, cov_terms = [], []
    for z in (z1, z2):
        mean = [sum(z[i, j] for i in range(n)) / n for j in range(d)]
        cov = np.zeros((d, d))
        for a in range(d):
            for b in range(d):
                cov[a, b] = sum((z[i, a] - mean[a]) * (z[i, b] - mean[b]) for i in range(n)) / (n - 1)
        var_terms.append(sum(max(0.0, 1.0 - math.sqrt(cov[j, j] + eps)) for j in range(d)) / d)
        cov_terms.append(sum(cov[a, b] ** 2 for a in range(d) for b in range(d) if a != b) / d)
    return inv_c * inv + var_c * (var_terms[0] + var_terms[1]) / 2 + cov_c * (cov_terms[0] + cov_terms[1])


@pytest.mark.parametrize("coeffs", [(10.0, 10.0, 1.0), (1.0, 2.0, 3.0)])
def test_vicreg_matches_direct_formula(coeffs):
    rng = np.random.default_rng(0)
    # columns of very different scale, so that the hinge is active on some dimensions only
    scales = np.array([0.2, 0.7, 1.5, 3.0])
    z1 = rng.normal(size=(7, 4)) * scales
    z2 = z1 + 0.3 * rng.normal(size=(7, 4))
    loss, stats = vicreg_loss(torch.tensor(z1), torch.tensor(z2), *coeffs, eps=1e-4)
    assert float(loss) == pytest.approx(_vicreg_reference(z1, z2, *coeffs, 1e-4), rel=1e-10)
    assert set(stats) == {"invariance", "variance", "covariance"}


def test_vicreg_of_identical_whitened_views_is_zero():
    z = gaussian_data(200, 4, torch.Generator().manual_seed(0)).double() * math.sqrt(200 / 199) * 1.01
    loss, _ = vicreg_loss(z, z)
    assert float(loss) == pytest.approx(0.0, abs=1e-10)


def _info_nce_reference(z1, z2, tau):
    n = len(z1)
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    total = 0.0
    for i in range(2 * n):
        positive = i + n if i < n else i - n
        denominator = sum(math.exp(float(z[i] @ z[j]) / tau) for j in range(2 * n) if j != i)
        total += -float(z[i] @ z[positive]) / tau + math.log(denominator)
    return total / (2 * n)


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_info_nce_matches_direct_formula(tau):
    rng = np.random.default_rng(1)
    z1 = rng.normal(size=(6, 3))
    z2 = z1 + 0.5 * rng.normal(size=(6, 3))
    loss = info_nce_loss(torch.tensor(z1), torch.tensor(z2), tau)
    assert float(loss) == pytest.approx(_info_nce_reference(z1, z2, tau), rel=1e-10)
    # symmetric in the two views
    assert float(info_nce_loss(torch.tensor(z2), torch.tensor(z1), tau)) == pytest.approx(float(loss), rel=1e-12)


def test_embedding_spectrum_is_the_eigenvalues_of_the_embedding_covariance():
    net = LinearNet(3, width=5, init="gaussian", init_scale=1.0, generator=torch.Generator().manual_seed(0))
    x = torch.randn(50, 5, generator=torch.Generator().manual_seed(1))
    w = [layer.weight.detach().double().numpy() for layer in net.layers]
    z = x.double().numpy() @ w[0].T @ w[1].T @ w[2].T
    zc = z - z.mean(axis=0)
    expected = np.sort(np.linalg.eigvalsh(zc.T @ zc / len(z)))[::-1]
    np.testing.assert_allclose(embedding_spectrum(net, x), expected, rtol=1e-9, atol=1e-12)


def test_orthogonal_init_has_equal_singular_values():
    net = LinearNet(2, width=16, init="orthogonal", init_scale=0.3, generator=torch.Generator().manual_seed(0))
    for layer in net.layers:
        np.testing.assert_allclose(torch.linalg.svdvals(layer.weight.detach()).numpy(), 0.3, rtol=1e-5)
        assert layer.bias is None


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------

# The 2-layer VICReg model of Figure 1 (Gaussian init, init_scale 0.1, k = 0.1), run with SGD at
# lr 0.2 for 250 epochs so that the test takes seconds (the figures use lr 0.1, which 4-layer models
# need). Margins seen on seeds 0-7: with WERank every weight singular value in [0.894, 1.142] and the
# smallest embedding-covariance eigenvalue >= 0.731; without, the smallest weight singular value
# <= 0.00965 and the smallest embedding eigenvalue <= 1.8e-08.
FAST_VICREG = ["vicreg.optim.lr=0.2", "train.epochs=250", "train.record_every=250", "train.progress=none"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_werank_keeps_every_vicreg_weight_singular_value_near_one(seed):
    cfg = load_config(CONFIGS / "fig1.yaml", FAST_VICREG + [f"seed={seed}"])
    assert cfg.model.num_layers == 2
    without = train_run(cfg, RunSpec("vicreg", 2, cfg.data.k, 0.0))
    with_ = train_run(cfg, RunSpec("vicreg", 2, cfg.data.k, 0.1))
    assert without["epochs"][-1] == with_["epochs"][-1] == 250
    # same data, initialisation and noise: the runs start identical
    assert without["weights"][0][0] == with_["weights"][0][0]
    final_with = [sv for layer in with_["weights"] for sv in layer[-1]]
    final_without = [sv for layer in without["weights"] for sv in layer[-1]]
    assert len(final_with) == 32
    assert 0.8 <= min(final_with) and max(final_with) <= 1.2, final_with
    assert min(final_without) < 0.5, final_without
    # with WERank the embedding covariance is clearly full rank; without, it has collapsed directions
    assert min(with_["embedding"][-1]) > 0.3
    assert min(without["embedding"][-1]) < 1e-3


def test_training_is_deterministic_per_seed():
    cfg = build_config({}, ["train.epochs=5", "train.progress=none", "data.num_points=64"])
    a = train_run(cfg, RunSpec("ema", 2, 0.1, 0.1))
    b = train_run(cfg, RunSpec("ema", 2, 0.1, 0.1))
    assert a == b
    assert a["predictor"] is not None and len(a["predictor"]) == len(a["epochs"])


# --------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    load_config(path)


@pytest.mark.parametrize("data, overrides, key", [
    ({"data": {"k": -0.1}}, [], "data.k"),
    ({"model": {"layers": 2}}, [], "model.layers"),
    ({"train": {"epochs": "many"}}, [], "train.epochs"),
    ({}, ["vicreg.optim.lr=0"], "vicreg.optim.lr"),
    ({}, ["ema.optim.name=lbfgs"], "ema.optim.name"),
    ({}, ["ema.momentum=1.5"], "ema.momentum"),
    ({}, ["sweep.losses=[vicreg, simclr]"], "sweep.losses.1"),
    ({}, ["infonce.temperature=0"], "infonce.temperature"),
    ({}, ["werank.alpha=-1"], "werank.alpha"),
    ({}, ["model.init=xavier"], "model.init"),
    ({}, ["data.noise_dims=17"], "data.noise_dims"),
])
def test_config_errors_name_the_key(data, overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_config(data, overrides)


def test_config_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  k: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------------------------------
# CLI end to end
# --------------------------------------------------------------------------------------------------

TINY = ["--set", "train.epochs=4", "--set", "train.record_every=2", "--set", "data.num_points=64",
        "--set", "train.progress=none"]


def test_cli_runs_a_tiny_trajectory_figure(tmp_path, capsys):
    out = tmp_path / "fig1"
    assert main(["--figure", "1", "--config", str(CONFIGS / "fig1.yaml"), *TINY, "--out", str(out)]) == 0
    for name in ("config.yaml", "spectra.json", "summary.json", "summary.md", "fig1.png"):
        assert (out / name).is_file(), name
    assert (out / "fig1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spectra = json.loads((out / "spectra.json").read_text())
    runs = spectra["runs"]
    assert [r["spec"]["alpha"] for r in runs] == [0.0, 0.1]
    assert all(r["spec"]["loss"] == "vicreg" and r["spec"]["num_layers"] == 2 for r in runs)
    assert runs[0]["epochs"] == [0, 2, 4]
    assert len(runs[0]["weights"]) == 2 and len(runs[0]["weights"][0][-1]) == 16
    assert len(runs[0]["embedding"][-1]) == 16
    assert "train.epochs" not in (out / "config.yaml").read_text()  # nested YAML, not dotted keys
    assert load_config(out / "config.yaml").train.epochs == 4  # the resolved config reloads
    # the figure can be redrawn from the run folder alone
    (out / "fig1.png").unlink()
    assert main(["--replot", str(out)]) == 0
    assert (out / "fig1.png").is_file()


def test_cli_runs_tiny_sweep_figures(tmp_path):
    out2, out3 = tmp_path / "fig2", tmp_path / "fig3"
    assert main(["--figure", "2", "--config", str(CONFIGS / "fig2.yaml"), *TINY,
                 "--set", "sweep.num_layers=[1,3]", "--out", str(out2)]) == 0
    runs = json.loads((out2 / "spectra.json").read_text())["runs"]
    assert [(r["spec"]["num_layers"], r["spec"]["alpha"]) for r in runs] == [(1, 0.0), (1, 0.1), (3, 0.0), (3, 0.1)]
    assert main(["--figure", "3", "--config", str(CONFIGS / "fig3.yaml"), *TINY,
                 "--set", "sweep.k=[0.1,1.0]", "--out", str(out3)]) == 0
    runs = json.loads((out3 / "spectra.json").read_text())["runs"]
    assert len(runs) == 3 * 2 * 2
    assert {r["spec"]["loss"] for r in runs} == {"ema", "infonce", "vicreg"}
    assert all(r["spec"]["num_layers"] == 1 for r in runs)
    assert (out3 / "fig3.png").is_file()


def test_cli_reports_a_bad_key_and_exits_2(tmp_path, capsys):
    code = main(["--figure", "1", "--set", "data.kk=0.5", "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert "data.kk" in err and "data.k" in err
    assert not (tmp_path / "x").exists()  # failed before creating the run folder
    assert main(["--set", "seed=1"]) == 2
    assert "--figure is required" in capsys.readouterr().err


def test_report_generates_the_readme_blocks_from_run_folders(tmp_path):
    from bgrl_werank.toy.report import RUNS, report

    runs = tmp_path / "runs"
    for _, folder, command in RUNS:
        figure = command.split("--figure ")[1].split()[0]
        extra = {"2": ["--set", "sweep.num_layers=[1,2]"], "3": ["--set", "sweep.k=[0.1,1.0]"]}.get(figure, [])
        assert main(["--figure", figure, "--config", str(CONFIGS / f"fig{figure}.yaml"), *TINY, *extra,
                     "--out", str(runs / folder)]) == 0
    readme = tmp_path / "README.md"
    markers = ["toy-runtimes", "toy-fig1", "toy-fig2", "toy-fig3", "toy-fig4", "toy-fig5", "toy-spectra"]
    readme.write_text("intro\n" + "".join(f"<!-- {m}:begin -->\nold\n<!-- {m}:end -->\n" for m in markers) + "outro\n")
    assert main(["--report", "--runs", str(runs), "--update", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    summary = json.loads((runs / "fig5" / "summary.json").read_text())
    assert f"{summary['seconds']:.1f} s |" in text  # the runtime column is the folder's own
    assert f"| {summary['runs'][1]['final_loss']:.4g} |" in text
    assert "runs/toy/fig3 — Figure 3: final spectra" in text


def test_report_names_a_missing_run_folder(tmp_path, capsys):
    assert main(["--report", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "has no spectra.json" in err and "fig1" in err
