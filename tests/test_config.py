"""Config schema: every shipped config loads; overrides; strict errors that name the key."""

from pathlib import Path

import pytest

from bgrl_werank.config import Config, ConfigError, load_config, save_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml"))


def test_there_are_configs():
    names = {p.stem for p in CONFIGS}
    assert {"cora", "citeseer", "amazon-computers", "amazon-photo", "coauthor-cs", "coauthor-physics"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads(path):
    cfg = load_config(path)
    # a config is named after its dataset, or after the dataset and the method it was tuned for
    assert isinstance(cfg, Config) and cfg.name == path.stem and path.stem.startswith(cfg.data.name)


def test_reference_hyperparameters():
    c = load_config(ROOT / "configs/amazon-photo.yaml")
    assert c.model.layer_sizes == [256, 128] and c.optim.lr == 1e-4
    assert [(v.edge_drop_p, v.feat_mask_p) for v in c.augment] == [(0.4, 0.1), (0.1, 0.2)]
    assert c.train.epochs == 10000 and c.optim.warmup_epochs == 1000 and c.optim.weight_decay == 1e-5
    cs = load_config(ROOT / "configs/coauthor-cs.yaml")
    assert cs.model.layer_sizes == [512, 256] and cs.optim.lr == 1e-5
    assert [(v.edge_drop_p, v.feat_mask_p) for v in cs.augment] == [(0.3, 0.3), (0.2, 0.4)]


def test_overrides_including_lists():
    c = load_config(None, ["werank.enabled=false", "seed=3", "augment.0.edge_drop_p=0.3",
                           "model.layer_sizes=[64, 32]", "optim.lr=1e-3", "werank.alpha=[0.1, 0.2]"])
    assert c.werank.enabled is False and c.seed == 3 and c.augment[0].edge_drop_p == 0.3
    assert c.model.layer_sizes == [64, 32] and c.optim.lr == 1e-3 and c.werank.alpha == [0.1, 0.2]


def test_save_and_reload_roundtrip(tmp_path):
    c = load_config(None, ["seed=7", "augment.1.feat_mask_p=0.5"])
    save_config(c, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == c


@pytest.mark.parametrize(
    "override, message",
    [
        ("werank.alhpa=0.1", "did you mean 'werank.alpha'"),
        ("traim.epochs=3", "did you mean 'train'"),
        ("seed=abc", "seed: expected an integer"),
        ("werank.enabled=maybe", "werank.enabled: expected true or false"),
        ("werank.alpha=-0.5", "werank.alpha must be >= 0"),
        ("augment.0.edge_drop_p=1.0", "augment.0.edge_drop_p must be a probability in [0, 1)"),
        ("augment.1.feat_mask_p=-0.1", "augment.1.feat_mask_p must be a probability"),
        ("train.epochs=0", "train.epochs must be > 0"),
        ("train.epochs=50", "optim.warmup_epochs must be in [0, train.epochs) = [0, 50), got 100; lower it (e.g. --set optim.warmup_epochs=5)"),
        ("model.layer_sizes=[]", "model.layer_sizes is empty"),
        ("werank.alpha=[]", "werank.alpha is an empty list"),
        ("method.name=simclr", "method.name must be one of bgrl, grace, gbt, cca_ssg, vicreg"),
        ("model.norm=group", "model.norm must be one of batch, layer, none"),
        ("device=tpu", "device must be auto, cpu, cuda or cuda:N"),
        ("method.grace.tau=0", "method.grace.tau must be > 0"),
        ("augment.5.edge_drop_p=0.1", "use an index 0..1"),
        ("eval.protocol=full", "eval.protocol must be one of"),
        ("noequals", "has no '='"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_key_in_yaml_and_malformed_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown config key 'optim.learning_rate'"):
        load_config(p)
    p.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_moved_keys_still_read_and_land_in_their_new_place():
    from bgrl_werank.config import build_config

    cfg = build_config({"model": {"predictor_hidden": 64}, "optim": {"momentum": 0.9}}, ["werank.include_predictor=true"])
    assert cfg.method.bgrl.predictor_hidden == 64 and cfg.method.bgrl.momentum == 0.9 and cfg.werank.include_heads
    with pytest.raises(ConfigError, match="old name of 'method.bgrl.predictor_hidden'"):
        build_config({"model": {"predictor_hidden": 64}, "method": {"bgrl": {"predictor_hidden": 32}}})


def test_csbm_size_limit_counts_the_feature_entries_it_stores():
    from bgrl_werank.config import build_config

    big = ["data.name=csbm", "data.csbm.num_nodes=10000000", "data.csbm.num_features=500"]
    # sparse: 10 ones per node, 10⁸ stored entries (the scale benchmark's 10⁷-node graph)
    assert build_config({}, [*big, "data.csbm.feature_density=0.02"]).data.csbm.num_nodes == 10**7
    with pytest.raises(ConfigError, match=r"got 10000000 x 500; lower one"):  # dense: 5·10⁹ entries
        build_config({}, big)
    with pytest.raises(ConfigError, match=r"x 250 \(500 features at density 0.5\)"):
        build_config({}, [*big, "data.csbm.feature_density=0.5"])
