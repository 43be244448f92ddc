"""Linear probe: both backends against sklearn's fitted models and an independent objective."""

import json
import math
import os
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from bgrl_werank.data.splits import Split, random_splits
from bgrl_werank.eval import DEFAULT_C_GRID, ProbeResult, fit_logistic_regression, linear_probe

from .conftest import missing_data


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The problems here are small; on a shared 2-core machine OpenMP's spin-waiting made 2-thread
    # runs of them up to 10x slower. Results do not depend on the thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _blobs(n: int, d: int, num_classes: int, sep: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian classes with unit-variance noise around means sep·e_k (k < num_classes)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    means = torch.zeros(num_classes, d)
    means[torch.arange(num_classes), torch.arange(num_classes)] = sep
    return means[y] + torch.randn(n, d, generator=g), y


def _objective(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, c: float) -> float:
    """C Σ_i CE_i + ½‖W‖², written out in numpy (W of shape (d, classes))."""
    logits = x @ w + b
    top = logits.max(1, keepdims=True)
    lse = (top + np.log(np.exp(logits - top).sum(1, keepdims=True)))[:, 0]
    return float(c * (lse - logits[np.arange(len(y)), y]).sum() + 0.5 * (w**2).sum())


def _sklearn_fit(x: np.ndarray, y: np.ndarray, c: float, tol: float = 1e-10) -> LogisticRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=c, tol=tol, max_iter=100_000).fit(x, y)


# --- the solver reaches sklearn's optimum -------------------------------------------------------


@pytest.mark.parametrize(("n", "d"), [(90, 6), (30, 50)])  # n > d, and n < d (reduced to n dims)
@pytest.mark.parametrize("c", [0.03, 1.0, 30.0])
def test_fit_matches_sklearn_optimum(n, d, c):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) + 0.3
    y = torch.arange(n) % 4
    weight, bias = fit_logistic_regression(x, y, [c], tol=1e-10)
    assert weight.shape == (1, d, 4) and bias.shape == (1, 4)
    w, b = weight[0].numpy(), bias[0].numpy()
    clf = _sklearn_fit(x.numpy(), y.numpy(), c)
    sk_w, sk_b = clf.coef_.T, clf.intercept_
    f_torch = _objective(x.numpy(), y.numpy(), w, b, c)
    f_sklearn = _objective(x.numpy(), y.numpy(), sk_w, sk_b, c)
    # The optimum is unique (strictly convex in W, bias up to a common shift): values and
    # coefficients agree; torch is never worse than sklearn beyond rounding.
    assert f_torch <= f_sklearn * (1 + 1e-10)
    assert f_torch == pytest.approx(f_sklearn, rel=1e-8)
    scale = np.abs(sk_w).max()
    assert np.abs(w - sk_w).max() <= 1e-4 * scale
    assert np.abs((b - b.mean()) - (sk_b - sk_b.mean())).max() <= 1e-4 * max(scale, 1.0)


@pytest.mark.parametrize("tol", [1e-10, 1e-6])  # float64 and float32 matrix products
def test_fit_gradient_meets_tolerance(tol):
    # Independent optimality check, in float64 on the returned solution:
    # ∇_W = C Xᵀ(P − Y) + W and ∇_b = C 1ᵀ(P − Y), scaled by 1/(C n) as in sklearn's gtol.
    x, y = _blobs(300, 20, 3, sep=1.0, seed=1)
    x = torch.nn.functional.normalize(x.double(), dim=1)
    grid = [0.5, 2.0, 128.0]
    weight, bias = fit_logistic_regression(x, y, grid, tol=tol)
    for c, w, b in zip(grid, weight, bias):
        resid = torch.softmax(x @ w + b, 1) - torch.nn.functional.one_hot(y, 3).double()
        grad = torch.cat([(c * x.T @ resid + w).flatten(), c * resid.sum(0)])
        assert grad.abs().max() / (c * len(y)) <= 1.5 * tol
        assert abs(float(b.sum())) < 1e-9  # the bias gauge


# --- the probe -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_separable_blobs_reach_high_accuracy(backend):
    x, y = _blobs(600, 16, 3, sep=6.0, seed=0)
    res = linear_probe(x, y, random_splits(600, num_splits=3, seed=0), c_grid=[0.1, 1.0, 10.0], backend=backend)
    assert res.backend == backend
    assert len(res.test_acc) == len(res.val_acc) == len(res.best_c) == 3
    assert min(res.test_acc) >= 0.95
    assert res.mean >= 0.95


def test_torch_agrees_with_sklearn_on_overlapping_classes():
    # Hard enough that accuracies are far from 1 and differ between C values.
    x, y = _blobs(500, 12, 4, sep=1.5, seed=2)
    splits = random_splits(500, num_splits=4, seed=1)
    grid = [2.0**k for k in (-6, -3, 0, 3, 6)]
    res_t = linear_probe(x, y, splits, c_grid=grid, backend="torch", tol=1e-6)
    res_s = linear_probe(x, y, splits, c_grid=grid, backend="sklearn", tol=1e-6)
    assert 0.5 < res_s.mean < 0.95
    assert abs(res_t.mean - res_s.mean) <= 0.005
    assert max(abs(a - b) for a, b in zip(res_t.test_acc, res_s.test_acc)) <= 0.01


def test_reported_accuracy_equals_independent_refit():
    # For each split, refit sklearn at the C the torch probe selected and count by hand.
    x, y = _blobs(300, 8, 3, sep=1.2, seed=3)
    xn = torch.nn.functional.normalize(x, dim=1).double().numpy()
    splits = random_splits(300, num_splits=3, seed=2)
    res = linear_probe(x, y, splits, c_grid=[0.25, 4.0, 64.0], tol=1e-8)
    for split, c, acc, val in zip(splits, res.best_c, res.test_acc, res.val_acc):
        clf = _sklearn_fit(xn[split.train], y[split.train].numpy(), c, tol=1e-8)
        assert acc == pytest.approx(np.mean(clf.predict(xn[split.test]) == y[split.test].numpy()), abs=1e-12)
        assert val == pytest.approx(np.mean(clf.predict(xn[split.val]) == y[split.val].numpy()), abs=1e-12)


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_ties_in_validation_accuracy_pick_smallest_c(backend):
    # Perfectly separated classes: every C reaches 100% validation accuracy.
    x, y = _blobs(200, 4, 2, sep=50.0, seed=4)
    grid = [8.0, 0.5, 2.0]  # deliberately unsorted
    res = linear_probe(x, y, random_splits(200, num_splits=2, seed=0), c_grid=grid, backend=backend)
    assert res.val_acc == [1.0, 1.0]
    assert res.best_c == [0.5, 0.5]


def test_uneven_splits_and_a_class_missing_from_train():
    # Splits of different train sizes (padding) and a split whose train set lacks class 2: that
    # class can then never be predicted, as in sklearn, and accuracies still agree.
    x, y = _blobs(240, 6, 3, sep=2.0, seed=5)
    idx = torch.randperm(240, generator=torch.Generator().manual_seed(0))
    no_class2 = idx[y[idx] != 2][:30]
    splits = [
        Split(idx[:40], idx[40:80], idx[80:]),
        Split(no_class2, idx[100:140], idx[140:]),
        Split(idx[:15], idx[15:60], idx[60:]),
    ]
    res_t = linear_probe(x, y, splits, c_grid=[0.5, 8.0], tol=1e-8)
    res_s = linear_probe(x, y, splits, c_grid=[0.5, 8.0], backend="sklearn", tol=1e-8)
    assert res_t.test_acc == pytest.approx(res_s.test_acc, abs=1e-12)
    assert res_t.best_c == res_s.best_c
    test_y = y[splits[1].test]
    assert res_t.test_acc[1] <= float((test_y != 2).double().mean())


def test_normalize_makes_row_scale_irrelevant():
    x, y = _blobs(200, 6, 3, sep=1.5, seed=6)
    scale = torch.rand(200, 1, generator=torch.Generator().manual_seed(1)) * 10 + 0.1
    splits = random_splits(200, num_splits=2, seed=3)
    a = linear_probe(x, y, splits, c_grid=[1.0, 10.0], tol=1e-8)
    b = linear_probe(x * scale, y, splits, c_grid=[1.0, 10.0], tol=1e-8)
    assert a.test_acc == b.test_acc and a.best_c == b.best_c


def test_deterministic_and_serialisable():
    x, y = _blobs(300, 10, 3, sep=1.5, seed=7)
    splits = random_splits(300, num_splits=3, seed=4)
    a = linear_probe(x, y, splits, c_grid=DEFAULT_C_GRID)
    b = linear_probe(x.clone(), y.clone(), splits, c_grid=DEFAULT_C_GRID)
    assert (a.test_acc, a.val_acc, a.best_c) == (b.test_acc, b.val_acc, b.best_c)
    assert isinstance(a, ProbeResult)
    assert a.mean == pytest.approx(float(np.mean(a.test_acc)))
    assert a.std == pytest.approx(float(np.std(a.test_acc)))  # population std, ddof=0
    assert all(0.0 <= v <= 1.0 for v in a.test_acc + a.val_acc)
    d = json.loads(json.dumps(a.to_dict()))
    assert d["test_acc"] == a.test_acc and d["backend"] == "torch" and d["seconds"] > 0


def test_default_grid():
    assert DEFAULT_C_GRID == tuple(2.0**k for k in range(-10, 11))


# --- validation -------------------------------------------------------------------------------------


def _valid():
    x, y = _blobs(50, 3, 2, sep=3.0, seed=8)
    return x, y, random_splits(50, num_splits=1)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda x, y, s: (x[0], y, s, {}), "2-D"),
        (lambda x, y, s: (x, y[:-1], s, {}), "labels"),
        (lambda x, y, s: (x, y.float(), s, {}), "integers"),
        (lambda x, y, s: (x, y, s, {"c_grid": []}), "empty"),
        (lambda x, y, s: (x, y, s, {"c_grid": [1.0, 0.0]}), "positive"),
        (lambda x, y, s: (x, y, s, {"c_grid": [-1.0]}), "positive"),
        (lambda x, y, s: (x, y, s, {"c_grid": [math.inf]}), "positive"),
        (lambda x, y, s: (x, y, [Split(s[0].train, s[0].val, torch.tensor([3, 50]))], {}), "out of range"),
        (lambda x, y, s: (x, y, [Split(torch.tensor([-1, 2]), s[0].val, s[0].test)], {}), "out of range"),
        (lambda x, y, s: (torch.where(torch.arange(50)[:, None] == 7, math.nan, x), y, s, {}), "NaN/inf"),
        (lambda x, y, s: (x, y, s, {"backend": "jax"}), "backend"),
        (lambda x, y, s: (x, y, [], {}), "splits"),
        (lambda x, y, s: (x, y, [Split(torch.tensor([0, 2]), s[0].val, s[0].test)], {}), "two classes"),
        (lambda x, y, s: (x, y, s, {"max_iter": 0}), "max_iter"),
        (lambda x, y, s: (x, y, s, {"tol": 0.0}), "tol"),
    ],
)
def test_invalid_inputs_raise(mutate, message):
    x, y, splits, kwargs = mutate(*_valid())
    with pytest.raises(ValueError, match=message):
        linear_probe(x, y, splits, **kwargs)


def test_inf_embeddings_rejected_with_clear_message():
    x, y, splits = _valid()
    x[3, 1] = math.inf
    with pytest.raises(ValueError, match="embeddings contain NaN/inf"):
        linear_probe(x, y, splits)


# --- real data --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cora():
    root = os.environ.get("BGRL_WERANK_DATA")
    if not root:
        missing_data("BGRL_WERANK_DATA is not set")
    from benchmarks.bench_probe import load_dataset

    try:
        return load_dataset("cora", root)
    except FileNotFoundError as err:
        missing_data(str(err))


@pytest.mark.realdata
def test_cora_random_splits_torch_within_one_point_of_sklearn(cora):
    from benchmarks.bench_probe import sgc_features

    # Â²X projected to 64 dims keeps the 420 sklearn fits at a few seconds.
    z = sgc_features(cora, dim=64)
    splits = random_splits(z.shape[0], num_splits=20, seed=0)
    res_t = linear_probe(z, cora.y, splits)
    res_s = linear_probe(z, cora.y, splits, backend="sklearn")
    assert 0.6 < res_s.mean < 0.9
    assert abs(res_t.mean - res_s.mean) <= 0.01  # observed: 0.05 points


@pytest.mark.realdata
def test_cora_public_split_full_features(cora):
    from benchmarks.bench_probe import sgc_features

    # 1433 features, 140 train nodes: the torch backend works in the 140-dim row space.
    z = sgc_features(cora, dim=None)
    split = Split(*(m.nonzero().view(-1) for m in (cora.train_mask, cora.val_mask, cora.test_mask)))
    res_t = linear_probe(z, cora.y, [split])
    res_s = linear_probe(z, cora.y, [split], backend="sklearn")
    assert res_s.test_acc[0] > 0.7
    assert abs(res_t.test_acc[0] - res_s.test_acc[0]) <= 0.01  # observed: 80.5% vs 80.6%, both at C = 8


def test_predictions_in_row_chunks_give_the_same_result(monkeypatch):
    # the chunks that keep a 10⁷-node probe in memory change nothing: same C choices, same accuracies
    from bgrl_werank.data.splits import random_splits
    from bgrl_werank.eval import probe as probe_mod

    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 4, (600,), generator=g)
    z = torch.randn(600, 8, generator=g) + 0.8 * torch.nn.functional.one_hot(y, 8).float()
    splits = random_splits(600, num_splits=3)
    for normalize in (False, True):
        whole = probe_mod.linear_probe(z, y, splits, c_grid=[0.01, 1.0, 100.0], normalize=normalize)
        monkeypatch.setattr(probe_mod, "PREDICT_ROWS", 7)  # 7 test rows, or 2 val rows over the 3 Cs, a chunk
        chunked = probe_mod.linear_probe(z, y, splits, c_grid=[0.01, 1.0, 100.0], normalize=normalize)
        monkeypatch.undo()
        assert chunked.test_acc == whole.test_acc and chunked.val_acc == whole.val_acc and chunked.best_c == whole.best_c
