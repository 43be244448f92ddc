"""Issue 19: bad input never crashes inside torch/numpy. Every numeric key has a range checked at load
time, config files that are not UTF-8 (or not files) are one-line errors, ``name`` is one safe
folder name, the toy's --replot/--report survive damaged files, and the sweep's strength axis says
what shape it wants. Every case goes through a public entry point and ends in one ``error:`` line
(exit 2) before any folder exists."""

from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Union

import pytest
import yaml

from bgrl_werank import config as config_mod
from bgrl_werank import sweep as sweep_mod
from bgrl_werank.cli import train_main
from bgrl_werank.config import Config, ConfigError, build_config, load_config, upgrade_saved_config
from bgrl_werank.toy import config as toy_config
from bgrl_werank.toy.cli import main as toy_main

from .conftest import ROOT, TINY, sets

# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


def _numeric_leaves(schema: type) -> dict[str, type]:
    """Every int and float key of a dataclass schema and its type, walked from the type hints
    (independently of the code under test); ``*`` stands for a list index, and a key that is a
    number or a list of numbers appears in both forms."""
    out: dict[str, type] = {}

    def walk(tp, path):
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            for arg in typing.get_args(tp):
                walk(arg, path)
        elif origin is list:
            walk(typing.get_args(tp)[0], f"{path}.*")
        elif dataclasses.is_dataclass(tp):
            for name, hint in typing.get_type_hints(tp).items():
                walk(hint, f"{path}.{name}" if path else name)
        elif tp in (int, float):
            out[path] = tp

    walk(schema, "")
    return out


def _edges(bounds, integer: bool):
    """(inside, outside) values at each end: the bound itself when it is included (else the nearest
    value inside), and the nearest value beyond it."""
    out = {}
    for side, bound, opened, inward in (("low", bounds.low, bounds.low_open, math.inf),
                                        ("high", bounds.high, bounds.high_open, -math.inf)):
        if integer:
            step = 1 if inward > 0 else -1
            inside = int(bound) + step if opened else int(bound)
            outside = int(bound) if opened else int(bound) - step
        else:
            inside = math.nextafter(float(bound), inward) if opened else float(bound)
            outside = float(bound) if opened else math.nextafter(float(bound), -inward)
        out[side] = (inside, outside)
    return out


def _text(v) -> str:
    return str(v) if isinstance(v, int) else repr(float(v))


def _assignment(pattern: str, value) -> str:
    """A --set assignment putting ``value`` at ``pattern`` (a trailing list index: a one-item list)."""
    if pattern.endswith(".*"):
        return f"{pattern[:-2]}=[{_text(value)}]"
    return f"{pattern.replace('*', '0')}={_text(value)}"


def _concrete(pattern: str) -> str:
    return pattern.replace("*", "0")


def _get(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


# keys whose bounds are only reachable with other keys set to match (conditions between keys)
RUN_COMPANIONS = {
    ("optim.warmup_epochs", "high"): ["train.epochs=1000000"],
    ("train.epochs", "low"): ["optim.warmup_epochs=0"],
    ("data.csbm.num_nodes", "low"): ["data.csbm.num_classes=2", "data.csbm.avg_degree=1"],
    ("data.csbm.num_classes", "high"): ["data.csbm.num_nodes=10000"],
    ("data.csbm.avg_degree", "high"): ["data.csbm.num_nodes=20000"],
}
TOY_COMPANIONS = {
    ("data.num_points", "low"): ["data.dim=1", "data.noise_dims=1"],
    ("data.dim", "low"): ["data.noise_dims=1"],
    ("data.dim", "high"): ["data.num_points=2000"],
    ("data.noise_dims", "high"): ["data.dim=1024", "data.num_points=2000"],
}
RUN_LEAVES = _numeric_leaves(Config)
TOY_LEAVES = _numeric_leaves(toy_config.ToyConfig)
SWEEP_LEAVES = _numeric_leaves(sweep_mod.SweepConfig)


# --------------------------------------------------------------------------------------------------
# 1. every numeric key has a range
# --------------------------------------------------------------------------------------------------


def test_the_schemas_have_the_numeric_keys_the_tests_expect():
    # the walker above finds list items and number-or-list keys
    assert {"seed", "threads", "model.layer_sizes.*", "werank.alpha", "werank.alpha.*", "eval.c_grid.*",
            "augment.*.edge_drop_p", "data.csbm.seed", "method.grace.chunk_size"} <= set(RUN_LEAVES)
    assert {"seed", "data.seed", "sweep.k.*", "sweep.num_layers.*", "vicreg.optim.lr"} <= set(TOY_LEAVES)
    assert set(SWEEP_LEAVES) == {"seeds.*", "strength.scale.*", "strength.explicit.*.*.*"}


@pytest.mark.parametrize("schema, table", [("Config", "RANGES"), ("ToyConfig", "TOY_RANGES"), ("SweepConfig", "SWEEP_RANGES")])
def test_every_numeric_key_has_exactly_one_range_entry(schema, table):
    """A new int/float key cannot slip through: the range table lists exactly the schema's numeric keys."""
    module = {"Config": config_mod, "ToyConfig": toy_config, "SweepConfig": sweep_mod}[schema]
    ranges = getattr(module, table)
    leaves = set(_numeric_leaves(getattr(module, schema)))
    assert sorted(leaves - set(ranges)) == [], "numeric keys without a range"
    assert sorted(set(ranges) - leaves) == [], "range entries for keys the schema does not have"
    for key, b in ranges.items():
        assert b.low < b.high and all(math.isfinite(x) for x in (b.low, b.high)), key


def _range_cases(leaves):
    return [(key, side) for key in sorted(leaves) for side in ("low", "high")]


# run config and toy config: (its range table, its numeric leaves, the keys some bounds need set too,
# how it is built from --set overrides)
SCHEMAS = {
    "run": (config_mod.RANGES, RUN_LEAVES, RUN_COMPANIONS, lambda overrides: load_config(None, overrides)),
    "toy": (toy_config.TOY_RANGES, TOY_LEAVES, TOY_COMPANIONS, lambda overrides: toy_config.build_config(None, overrides)),
}


@pytest.mark.parametrize("schema, key, side", [(name, key, side) for name, (_, leaves, _, _) in SCHEMAS.items()
                                                for key, side in _range_cases(leaves)], ids=lambda v: str(v))
def test_config_bounds_accepted_and_just_outside_refused(schema, key, side):
    ranges, leaves, companions, build = SCHEMAS[schema]
    inside, outside = _edges(ranges[key], leaves[key] is int)[side]
    extra = companions.get((key, side), [])
    cfg = build(extra + [_assignment(key, inside)])
    assert _get(cfg, _concrete(key)) == inside
    with pytest.raises(ConfigError) as e:
        build(extra + [_assignment(key, outside)])
    msg = str(e.value)
    assert "\n" not in msg and _concrete(key) in msg, msg


def _sweep_yaml(tmp_path: Path, **extra) -> Path:
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"name": "tiny"}))
    cfg = {"name": "tiny", "out_dir": str(tmp_path / "sweeps"), "base": str(base),
           "overrides": TINY + ["train.epochs=4", "checkpoint.every=2", "eval.num_splits=2"], "seeds": [0]}
    cfg.update(extra)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _sweep_value(key: str, v) -> dict:
    return {"seeds.*": {"seeds": [v]}, "strength.scale.*": {"strength": {"scale": [v]}},
            "strength.explicit.*.*.*": {"strength": {"explicit": [[[v, 0.2], [0.3, 0.4]]]}}}[key]


@pytest.mark.parametrize("key, side", _range_cases(SWEEP_LEAVES), ids=lambda v: str(v))
def test_sweep_config_bounds_accepted_and_just_outside_refused(tmp_path, capsys, key, side):
    bounds = sweep_mod.SWEEP_RANGES[key]
    integer = SWEEP_LEAVES[key] is int
    inside, outside = _edges(bounds, integer)[side]
    sweep_mod.load_sweep(_sweep_yaml(tmp_path, **_sweep_value(key, inside)))  # every cell's config builds
    assert sweep_mod.main(["--config", str(_sweep_yaml(tmp_path, **_sweep_value(key, outside)))]) == 2
    assert _concrete(key) in _one_error_line(capsys)
    assert not (tmp_path / "sweeps").exists()


def test_seed_bound_fits_torch_and_numpy_after_every_offset_the_code_adds():
    import numpy as np
    import torch

    from bgrl_werank.toy.train import NOISE_SEED_OFFSET
    from bgrl_werank.train.trainer import BATCHNORM_VIEWS_SEED

    seed = config_mod.RANGES["seed"]
    assert seed.low == 0  # numpy refuses negative seeds
    for table in (config_mod.RANGES, toy_config.TOY_RANGES, sweep_mod.SWEEP_RANGES):
        assert all(b == seed for k, b in table.items() if k.split(".")[-1] in ("seed", "split_seed") or k == "seeds.*")
    for value in (seed.low, seed.high, seed.high + BATCHNORM_VIEWS_SEED, seed.high + NOISE_SEED_OFFSET):
        torch.Generator().manual_seed(value)
        np.random.RandomState(value)
        np.random.default_rng(value)


@pytest.mark.parametrize("override, expected", [
    ("seed=99999999999999999999", "seed must be an integer in [0, 2147483647], got 99999999999999999999"),
    ("model.layer_sizes=[100000000000]", "model.layer_sizes.0 must be an integer in"),
    ("seed=-1", "seed must be an integer in [0,"),
    ("eval.split_seed=-5", "eval.split_seed must be an integer in [0,"),
    ("data.csbm.seed=-1", "data.csbm.seed must be an integer in [0,"),
    ("model.heads=1000000000", "model.heads must be an integer in [1,"),
    ("method.grace.chunk_size=99999999999999999999", "method.grace.chunk_size must be an integer in [1,"),
    ("optim.lr=.inf", "optim.lr: expected a finite number, got inf"),
    ("optim.lr=.nan", "optim.lr: expected a finite number, got nan"),
    ("optim.lr=-.inf", "optim.lr: expected a finite number"),
    ("werank.alpha=[0.1, .nan]", "werank.alpha.1: expected a finite number, got nan"),
    ("method.gbt.lambd=.nan", "method.gbt.lambd: expected a finite number, got nan"),
    ("optim.weight_decay=1e999", "optim.weight_decay: expected a finite number"),
    ("eval.c_grid=[1.0, .inf]", "eval.c_grid.1: expected a finite number"),
])
def test_values_that_crashed_in_torch_are_one_line_errors_before_any_folder(tmp_path, capsys, override, expected):
    out = tmp_path / "runs"
    rc = train_main(sets(TINY) + ["--set", override, "--set", f"out_dir={out}"])
    assert rc == 2
    assert expected in _one_error_line(capsys)
    assert not out.exists()


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(args[:3])} ... did not finish in {timeout} s (hangs on the bad value)")


def _one_line(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return err[0]


@pytest.mark.parametrize("override, expected", [
    ("threads=100000000", "threads must be an integer in [0, 1024], got 100000000"),  # was a segfault (rc 139)
    ("eval.num_splits=1000000000", "eval.num_splits must be an integer in [1, 1000], got 1000000000"),  # hung
])
def test_train_py_refuses_what_segfaulted_or_hung(tmp_path, override, expected):
    out = tmp_path / "runs"
    proc = _run(["train.py", *sets(TINY), "--set", override, "--set", f"out_dir={out}"], timeout=90)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert expected in _one_line(proc)
    assert not out.exists()


def test_toy_refuses_threads_that_segfault(tmp_path):
    out = tmp_path / "fig1"
    proc = _run(["-m", "bgrl_werank.toy", "--figure", "1", "--set", "threads=100000000", "--out", str(out)], timeout=90)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "threads must be an integer in [0, 1024]" in _one_line(proc)
    assert not out.exists()


# a tiny run (what the old code ran when it accepted a bad value)
TOY_TINY = ["--set", "train.epochs=2", "--set", "train.record_every=1", "--set", "data.num_points=40",
            "--set", "train.progress=none"]


@pytest.mark.parametrize("override, key", [
    ("seed=-1", "seed"), ("data.seed=4294967296", "data.seed"), ("data.k=.nan", "data.k"),
    ("vicreg.optim.lr=.inf", "vicreg.optim.lr"), ("sweep.k=[0.1, .inf]", "sweep.k.1"),
    ("model.num_layers=65", "model.num_layers"), ("data.dim=100000000", "data.dim"),
])
def test_toy_cli_refuses_out_of_range_values(tmp_path, capsys, override, key):
    out = tmp_path / "fig1"
    assert toy_main(["--figure", "1", *TOY_TINY, "--set", override, "--out", str(out)]) == 2
    assert key in _one_error_line(capsys)
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# every shipped and saved config still loads
# --------------------------------------------------------------------------------------------------

SAVED = sorted((ROOT / "results").rglob("config.yaml"))


def test_every_saved_run_config_under_results_still_loads():
    assert SAVED, "results/ holds saved run configs"
    for path in SAVED:
        build_config(upgrade_saved_config(yaml.safe_load(path.read_text())))


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_run_config_loads(path):
    load_config(path)


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "toy").glob("*.yaml")), ids=lambda p: p.name)
def test_every_toy_config_loads(path):
    toy_config.load_config(path)


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_sweep_config_and_the_run_configs_it_names_load(path, monkeypatch):
    data = yaml.safe_load(path.read_text())
    missing = [f for f in [data.get("base", "configs/cora.yaml"), *data.get("grid", {}).get("config", [])]
               if not (ROOT / f).is_file()]
    if missing:
        pytest.skip(f"run configs not written yet: {missing}")
    monkeypatch.chdir(ROOT)
    assert sweep_mod.make_cells(sweep_mod.load_sweep(path.relative_to(ROOT)))


# --------------------------------------------------------------------------------------------------
# 2. config files that cannot be read
# --------------------------------------------------------------------------------------------------


def test_a_config_file_that_is_not_utf8_is_one_line_naming_the_file_and_offset(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"seed: \xff\xfe\n")
    assert train_main(["--config", str(bad), "--set", f"out_dir={tmp_path / 'runs'}"]) == 2
    line = _one_error_line(capsys)
    assert str(bad) in line and "UTF-8" in line and "offset 6" in line
    assert not (tmp_path / "runs").exists()


def test_a_sweep_config_or_its_run_config_that_is_not_utf8(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    assert sweep_mod.main(["--config", str(bad)]) == 2
    line = _one_error_line(capsys)
    assert str(bad) in line and "offset 9" in line
    base = tmp_path / "base-latin1.yaml"
    base.write_bytes(b"# r\xe9glages\nname: tiny\n")
    path = _sweep_yaml(tmp_path, base=str(base))
    assert sweep_mod.main(["--config", str(path)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("error: base: ") and str(base) in line and "offset 3" in line
    assert not (tmp_path / "sweeps").exists()


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    p = tmp_path / "bom.yaml"
    p.write_bytes(b"\xef\xbb\xbfseed: 3\n")
    assert load_config(p).seed == 3


@pytest.mark.parametrize("content, expected", [
    (None, "is a folder"),  # a directory
    (b"seed: 1\x00\n", "not valid YAML"),  # a control character YAML refuses
    (b"seed: " + b"[" * 5000 + b"\n", "too deeply"),  # Python's recursion limit inside the YAML parser
], ids=["folder", "control-character", "deep-nesting"])
def test_other_unreadable_config_files(tmp_path, capsys, content, expected):
    path = tmp_path / "cfg.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert train_main(["--config", str(path), "--set", f"out_dir={tmp_path / 'runs'}"]) == 2
    line = _one_error_line(capsys)
    assert expected in line and str(path) in line
    assert sweep_mod.main(["--config", str(path)]) == 2
    assert expected in _one_error_line(capsys)
    assert toy_main(["--figure", "1", "--config", str(path), "--out", str(tmp_path / "fig1")]) == 2
    assert expected in _one_error_line(capsys)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "fig1").exists()


# --------------------------------------------------------------------------------------------------
# 3. name is one safe folder name
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "ABS", "a/b", ".", "..", "-rf", "''", "x" * 101, "a b", "a\\b", "a:b"])
def test_name_is_a_single_safe_folder_name(tmp_path, capsys, name):
    name = str(tmp_path / "abs") if name == "ABS" else name
    out = tmp_path / "a" / "b" / "runs"
    assert train_main(sets(TINY) + ["--set", f"name={name}", "--set", f"out_dir={out}"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("error: name must be a single folder name")
    assert list(tmp_path.rglob("*")) == []  # nothing created, inside tmp_path or out of out_dir


@pytest.mark.parametrize("name", ["cora", "cora-grace", "coauthor-physics-grace", "cora_cca_ssg", "run.2", "bgrl+werank", "_scratch", "x" * 100])
def test_ordinary_names_are_accepted(name):
    assert load_config(None, [f"name={name}"]).name == name


def test_a_sweep_name_is_a_single_safe_folder_name(tmp_path, capsys):
    for name in ("../x", "/tmp/x", ".", "a/b"):
        assert sweep_mod.main(["--config", str(_sweep_yaml(tmp_path, name=name))]) == 2
        assert _one_error_line(capsys).startswith("error: name must be a single folder name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.yaml", "sweep.yaml"]


# --------------------------------------------------------------------------------------------------
# 4. the toy CLI on damaged run folders
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("toy") / "fig1"
    assert toy_main(["--figure", "1", "--config", str(ROOT / "configs" / "toy" / "fig1.yaml"), *TOY_TINY,
                     "--set", "threads=1", "--out", str(out)]) == 0
    torch.set_num_threads(threads)
    return out


def _damage(path: Path, how: str) -> None:
    text = path.read_bytes()
    path.write_bytes({"truncated": text[: len(text) // 2], "empty": b"", "binary": b"\x89PNG\r\n\x1a\n\xff\x00" * 20,
                      "shape": b'{"figure": 1}\n', "figure": b'{"figure": 9, "runs": []}\n',
                      "runs": b'{"figure": 1, "runs": [{"spec": {}}, {}]}\n', "list": b"[1, 2]\n"}[how])


@pytest.mark.parametrize("how", ["truncated", "empty", "binary", "shape", "figure", "runs", "list"])
def test_replot_on_a_damaged_spectra_json_says_to_rerun(toy_run, tmp_path, capsys, how):
    run = tmp_path / "fig1"
    shutil.copytree(toy_run, run)
    (run / "fig1.png").unlink()
    _damage(run / "spectra.json", how)
    assert toy_main(["--replot", str(run)]) == 2
    line = _one_error_line(capsys)
    assert str(run / "spectra.json") in line and "re-run the experiment" in line and "without --replot" in line
    assert not (run / "fig1.png").exists()


def test_replot_without_config_yaml(toy_run, tmp_path, capsys):
    run = tmp_path / "fig1"
    shutil.copytree(toy_run, run)
    (run / "config.yaml").unlink()
    assert toy_main(["--replot", str(run)]) == 2
    assert f"'{run / 'config.yaml'}' not found; --replot takes a run folder" in _one_error_line(capsys)


def test_replot_of_an_intact_folder_still_draws(toy_run, tmp_path):
    run = tmp_path / "fig1"
    shutil.copytree(toy_run, run)
    (run / "fig1.png").unlink()
    assert toy_main(["--replot", str(run)]) == 0
    assert (run / "fig1.png").stat().st_size > 1000


@pytest.mark.parametrize("file, how", [("spectra.json", "truncated"), ("summary.json", "truncated"),
                                       ("summary.json", "binary"), ("spectra.json", "list"), ("summary.md", "empty"),
                                       ("summary.md", "binary")])
def test_report_on_damaged_run_files_says_to_rerun(toy_run, tmp_path, capsys, file, how):
    from bgrl_werank.toy.report import RUNS

    runs = tmp_path / "runs"
    for _, folder, _ in RUNS:  # every folder the report reads, each a copy of one tiny run
        shutil.copytree(toy_run, runs / folder)
    assert toy_main(["--report", "--runs", str(runs)]) == 0  # intact: the report builds
    capsys.readouterr()
    _damage(runs / "fig2" / file, how)
    assert toy_main(["--report", "--runs", str(runs)]) == 2
    line = _one_error_line(capsys)
    assert str(runs / "fig2" / file) in line and "re-run the experiment" in line and "--figure 2" in line


# --------------------------------------------------------------------------------------------------
# 5. the sweep's strength axis and seeds
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra, expected", [
    ({"strength": {"explicit": [[0.1, 0.2], [0.3, 0.4]]}},
     "strength.explicit.0 must be two views of [edge_drop_p, feat_mask_p]"),
    ({"strength": {"explicit": [[[0.1], [0.2, 0.3]]]}}, "strength.explicit.0 must be two views"),
    ({"strength": {"explicit": [[[0.1, 0.2], [0.2, 0.3], [0.4, 0.5]]]}}, "strength.explicit.0 must be two views"),
    ({"strength": {"explicit": [[[0.1, 0.2], [0.2, 0.3]], [[0.1, 0.2, 0.3], [0.2, 0.3]]]}}, "strength.explicit.1 must be two views"),
    ({"strength": {"explicit": 0.5}}, "strength.explicit must be a list of settings"),
    ({"strength": {"explicit": [[[0.1, 0.2], [0.3, 1.0]]]}}, "strength.explicit.0.1.1 (view 2's feat_mask_p, augment.1.feat_mask_p) must be a probability in [0, 1), got 1.0"),
    ({"strength": {"explicit": [[[-0.1, 0.2], [0.3, 0.4]]]}}, "strength.explicit.0.0.0"),
    ({"strength": {"explicit": [[[float("nan"), 0.2], [0.3, 0.4]]]}}, "strength.explicit.0.0.0: expected a finite number"),
    ({"strength": {"explicit": []}}, "strength.explicit is empty"),
    ({"strength": {"scale": []}}, "strength.scale is empty"),
    ({"strength": {"scale": [1.0, -0.5]}}, "strength.scale.1 must be a number in [0, 100], got -0.5"),
    ({"strength": {"scale": [float("nan")]}}, "strength.scale.0: expected a finite number, got nan"),
    ({"strength": {"scale": [float("inf")]}}, "strength.scale.0: expected a finite number, got inf"),
    ({"strength": "strong"}, "strength must be a mapping"),
    ({"seeds": []}, "seeds is empty"),
    ({"seeds": [-1]}, "seeds.0 must be an integer in [0, 2147483647], got -1"),
    ({"seeds": [0, 99999999999999999999]}, "seeds.1 must be an integer in [0, 2147483647]"),
    ({"grid": {"optim.lr": [float("nan")]}}, "optim.lr: expected a finite number"),
])
def test_bad_sweep_configs_are_one_line_errors_through_main(tmp_path, capsys, extra, expected):
    assert sweep_mod.main(["--config", str(_sweep_yaml(tmp_path, **extra))]) == 2
    line = _one_error_line(capsys)
    assert expected in line, line
    assert "expected mapping or null" not in line
    assert not (tmp_path / "sweeps").exists()


def test_explicit_given_as_one_setting_suggests_the_nesting(tmp_path, capsys):
    assert sweep_mod.main(["--config", str(_sweep_yaml(tmp_path, strength={"explicit": [[0.1, 0.2], [0.3, 0.4]]}))]) == 2
    assert "write explicit: [[[0.1, 0.2], [0.3, 0.4]]]" in _one_error_line(capsys)
