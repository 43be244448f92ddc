"""Encoders by name (bgrl_werank.encoders): shapes, gradients, options, errors, weight matrices."""

import itertools

import pytest
import torch

from bgrl_werank import encoders
from bgrl_werank.augment import normalized_adjacency
from bgrl_werank.encoders import GNNEncoder, named_weight_matrices
from bgrl_werank.losses import encoder_weights
from bgrl_werank.encoders.fast_gcn import FastGCNEncoder as GCNEncoder

devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

IN, SIZES = 12, [32, 16]


@pytest.fixture(autouse=True)
def _one_thread():
    """Graphs here are tiny; thread-pool start-up would cost more than the work (conftest restores the count)."""
    torch.set_num_threads(1)


def graph(num_nodes=40, num_edges=160, isolated=0, seed=0, device="cpu"):
    """Random features and a random edge list; the last ``isolated`` nodes have no edges at all."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, IN, generator=g)
    edge_index = torch.randint(0, num_nodes - isolated, (2, num_edges), generator=g)
    return x.to(device), edge_index.to(device)


# every option at least once, and every encoder with every norm and with every activation
COMBOS = sorted(
    {(n, norm, "prelu") for n, norm in itertools.product(encoders.NAMES, encoders.NORMS)}
    | {(n, "batch", act) for n, act in itertools.product(encoders.NAMES, encoders.ACTIVATIONS)}
)


@pytest.mark.parametrize("device", devices)
@pytest.mark.parametrize("name,norm,activation", COMBOS)
def test_shape_and_gradients(name, norm, activation, device):
    torch.manual_seed(0)
    model = encoders.build(name, IN, SIZES, norm=norm, activation=activation).to(device)
    assert (model.in_channels, model.layer_sizes, model.out_channels) == (IN, SIZES, 16)
    assert len(model.convs) == len(model.norms) == len(model.acts) == len(SIZES)
    x, edge_index = graph(device=device)
    out = model(x, edge_index)
    assert out.shape == (40, 16) and out.device.type == device and torch.isfinite(out).all()
    out.pow(2).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    # In train mode a BatchNorm cancels the bias just before it (its gradient is 0); in eval mode
    # it does not, and every parameter gets a nonzero gradient.
    model.zero_grad()
    model.eval()
    w = torch.randn(40, 16, generator=torch.Generator().manual_seed(1)).to(device)
    (model(x, edge_index) * w).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", encoders.NAMES)
def test_options_build_the_expected_modules(name):
    m = encoders.build(name, IN, SIZES, norm="layer", activation="elu")
    assert all(isinstance(n, torch.nn.LayerNorm) for n in m.norms)
    assert all(isinstance(a, torch.nn.ELU) for a in m.acts)
    m = encoders.build(name, IN, SIZES, norm="none", activation="relu")
    assert all(isinstance(n, torch.nn.Identity) for n in m.norms)
    assert all(isinstance(a, torch.nn.ReLU) for a in m.acts)
    m = encoders.build(name, IN, SIZES, prelu="channel")
    assert [a.weight.numel() for a in m.acts] == SIZES
    m = encoders.build(name, IN, SIZES)
    assert [a.weight.numel() for a in m.acts] == [1, 1]
    assert [n.momentum for n in m.norms] == [0.99, 0.99]
    assert [encoders.build(name, IN, SIZES, batchnorm_momentum=0.1).norms[0].momentum] == [0.1]


@pytest.mark.parametrize("name", encoders.NAMES)
def test_last_activation_false_ends_with_the_bare_conv(name):
    torch.manual_seed(0)
    model = encoders.build(name, IN, SIZES, last_activation=False)
    assert isinstance(model.norms[-1], torch.nn.Identity) and isinstance(model.acts[-1], torch.nn.Identity)
    assert isinstance(model.norms[0], torch.nn.BatchNorm1d) and isinstance(model.acts[0], torch.nn.PReLU)
    x, edge_index = graph()
    h = model.acts[0](model.norms[0](model.convs[0](x, edge_index)))
    torch.testing.assert_close(model(x, edge_index), model.convs[1](h, edge_index))
    with pytest.raises(ValueError):
        encoders.build(name, IN, SIZES, last_activation="no")


@pytest.mark.parametrize("name", encoders.NAMES)
def test_conv_defaults_and_kwargs(name):
    conv = encoders.build(name, IN, SIZES).convs[0]
    if name == "gcn":
        assert conv.normalize and not conv.cached
    elif name == "sage":
        assert "Mean" in type(conv.aggr_module).__name__
    elif name == "gat":
        assert conv.heads == 4 and conv.concat and conv.out_channels == 8
        conv = encoders.build(name, IN, SIZES, heads=2, dropout=0.1).convs[0]
        assert conv.heads == 2 and conv.out_channels == 16 and conv.dropout == 0.1
    elif name == "gin":
        assert not isinstance(conv.eps, torch.nn.Parameter)
        mlp = [type(m) for m in conv.nn]
        assert mlp == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
        assert isinstance(encoders.build(name, IN, SIZES, train_eps=True).convs[0].eps, torch.nn.Parameter)
    with pytest.raises(ValueError) as e:
        encoders.build(name, IN, SIZES, not_a_kwarg=1)
    assert "not_a_kwarg" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", encoders.NAMES)
def test_reset_parameters_changes_every_parameter(name):
    torch.manual_seed(0)
    model = encoders.build(name, IN, SIZES)
    model(*graph())  # moves the BatchNorm statistics
    before = {k: w.detach().clone() for k, w in named_weight_matrices(model)}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    perturbed = {k: p.detach().clone() for k, p in model.named_parameters()}
    model.reset_parameters()
    for k, p in model.named_parameters():
        assert not torch.equal(p, perturbed[k]), k
    for k, w in named_weight_matrices(model):
        assert not torch.allclose(w, before[k]), k
    for norm in model.norms:
        assert torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))
        assert torch.equal(norm.running_var, torch.ones_like(norm.running_var))


@pytest.mark.parametrize("device", devices)
@pytest.mark.parametrize("name", encoders.NAMES)
def test_isolated_nodes_and_empty_graph(name, device):
    torch.manual_seed(0)
    model = encoders.build(name, IN, SIZES).to(device)
    x, edge_index = graph(isolated=8, device=device)
    assert not torch.isin(torch.arange(32, 40, device=device), edge_index).any()
    for mode in (model.train, model.eval):
        mode()
        out = model(x, edge_index)
        assert out.shape == (40, 16) and torch.isfinite(out).all()
        out = model(x, edge_index[:, :0])
        assert out.shape == (40, 16) and torch.isfinite(out).all()


def test_gcn_state_dict_matches_existing_encoders():
    keys = list(encoders.build("gcn", IN, SIZES).state_dict())
    assert keys == list(GCNEncoder(IN, SIZES).state_dict())
    expected = set()
    for i in range(len(SIZES)):
        expected |= {f"convs.{i}.lin.weight", f"convs.{i}.bias", f"acts.{i}.weight"}
        expected |= {f"norms.{i}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    assert set(keys) == expected
    for prelu in ("shared", "channel"):
        ours = encoders.build("gcn", IN, SIZES, prelu=prelu).state_dict()
        theirs = GCNEncoder(IN, SIZES, prelu=prelu).state_dict()
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


@pytest.mark.parametrize("prelu", ["shared", "channel"])
def test_gcn_loads_fast_encoder_checkpoint(prelu):
    torch.manual_seed(0)
    x, edge_index = graph(isolated=4)
    fast = GCNEncoder(IN, SIZES, prelu=prelu)
    with torch.no_grad():  # a trained-looking state: nonzero biases, slopes and statistics
        for p in fast.parameters():
            p.add_(0.1 * torch.randn_like(p))
    fast(x, normalized_adjacency(edge_index, 40))  # one train-mode pass fills the running statistics
    ours = encoders.build("gcn", IN, SIZES, prelu=prelu)
    ours.load_state_dict(fast.state_dict())
    fast.eval()
    ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x, edge_index), fast(x, normalized_adjacency(edge_index, 40)), atol=1e-5, rtol=1e-5)


class StockGCN(torch.nn.Module):
    """The BGRL encoder block written out with stock modules: GCNConv → BatchNorm1d → PReLU per layer."""

    def __init__(self):
        super().__init__()
        from torch_geometric.nn import GCNConv

        sizes = [IN, *SIZES]
        self.convs = torch.nn.ModuleList(GCNConv(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.norms = torch.nn.ModuleList(torch.nn.BatchNorm1d(o, momentum=0.99) for o in SIZES)
        self.acts = torch.nn.ModuleList(torch.nn.PReLU() for _ in SIZES)

    def forward(self, x, edge_index):
        for conv, norm, act in zip(self.convs, self.norms, self.acts):
            x = act(norm(conv(x, edge_index)))
        return x


def test_gcn_matches_stock_modules_in_train_mode():
    torch.manual_seed(0)
    stock = StockGCN()
    ours = encoders.build("gcn", IN, SIZES)
    ours.load_state_dict(stock.state_dict())
    x, edge_index = graph()
    torch.testing.assert_close(ours(x, edge_index), stock(x, edge_index))
    for a, b in zip(ours.norms, stock.norms):
        torch.testing.assert_close(a.running_mean, b.running_mean)


def test_batchnorm_momentum_is_the_weight_of_the_new_batch():
    torch.manual_seed(0)
    model = encoders.build("gcn", IN, SIZES)
    seen = []
    model.convs[0].register_forward_hook(lambda mod, args, out: seen.append(out.detach()))
    model(*graph())
    h = seen[0]
    norm = model.norms[0]
    torch.testing.assert_close(norm.running_mean, 0.99 * h.mean(0))
    torch.testing.assert_close(norm.running_var, 0.01 + 0.99 * h.var(0, unbiased=True))


def test_gat_size_not_divisible_by_heads():
    with pytest.raises(ValueError) as e:
        encoders.build("gat", IN, [30, 16])
    assert str(e.value) == "gat layer size 30 is not divisible by heads=4"
    with pytest.raises(ValueError, match="heads=3"):
        encoders.build("gat", IN, [32, 16], heads=3)
    assert encoders.build("gat", IN, [30, 15], heads=3)(*graph()).shape == (40, 15)


@pytest.mark.parametrize("kwargs,message", [
    ({"name": "gcnn"}, "unknown encoder 'gcnn'; choose one of gcn, sage, gat, gin"),
    ({"name": "gcn", "norm": "bn"}, "unknown norm 'bn'; choose one of batch, layer, none"),
    ({"name": "sage", "activation": "tanh"}, "unknown activation 'tanh'; choose one of prelu, relu, elu"),
    ({"name": "gin", "prelu": "layer"}, "unknown prelu mode 'layer'; choose one of shared, channel"),
])
def test_unknown_choices_are_one_line_errors(kwargs, message):
    kwargs = dict(kwargs)
    with pytest.raises(ValueError) as e:
        encoders.build(kwargs.pop("name"), IN, SIZES, **kwargs)
    assert str(e.value) == message


@pytest.mark.parametrize("kwargs", [
    {"name": "gcn", "layer_sizes": []}, {"name": "gcn", "layer_sizes": [32, 0]},
    {"name": "sage", "in_channels": 0}, {"name": "gcn", "batchnorm_momentum": 1.5},
    {"name": "gat", "concat": False}, {"name": "gin", "nn": torch.nn.Identity()}, {"name": "gat", "heads": 0},
])
def test_bad_arguments_are_one_line_errors(kwargs):
    kwargs = {"in_channels": IN, "layer_sizes": SIZES, **kwargs}
    with pytest.raises(ValueError) as e:
        encoders.build(kwargs.pop("name"), kwargs.pop("in_channels"), kwargs.pop("layer_sizes"), **kwargs)
    assert "\n" not in str(e.value)


def test_register(monkeypatch):
    monkeypatch.setattr(encoders, "_REGISTRY", dict(encoders._REGISTRY))
    calls = []

    def two_hop(in_channels, layer_sizes, **kwargs):
        calls.append(kwargs)
        return GNNEncoder("sage", in_channels, layer_sizes, **kwargs)

    assert encoders.register("two_hop", two_hop) is two_hop
    assert encoders.available() == (*encoders.NAMES, "two_hop")
    model = encoders.build("two_hop", IN, SIZES, norm="layer", aggr="max")
    assert calls == [{"norm": "layer", "activation": "prelu", "batchnorm_momentum": 0.99, "prelu": "shared",
                      "last_activation": True, "aggr": "max"}]
    assert model(*graph()).shape == (40, 16)
    with pytest.raises(ValueError) as e:
        encoders.build("nope", IN, SIZES)
    assert str(e.value) == "unknown encoder 'nope'; choose one of gcn, sage, gat, gin, two_hop"
    with pytest.raises(ValueError, match="already registered"):
        encoders.register("gcn", two_hop)
    encoders.register("gcn", two_hop, replace=True)
    assert isinstance(encoders.build("gcn", IN, SIZES).convs[0], type(model.convs[0]))
    with pytest.raises(ValueError):
        encoders.register("", two_hop)
    with pytest.raises(ValueError):
        encoders.register("x", None)


def _expected_weight_names(name, model):
    names = []
    for i, conv in enumerate(model.convs):
        if name == "gcn":
            names.append(f"convs.{i}.lin.weight")
        elif name == "sage":
            names += [f"convs.{i}.lin_l.weight", f"convs.{i}.lin_r.weight"]
        elif name == "gat":  # one shared projection (newer PyG) or lin_src/lin_dst (older PyG)
            names += ([f"convs.{i}.lin.weight"] if getattr(conv, "lin", None) is not None
                      else [f"convs.{i}.lin_src.weight", f"convs.{i}.lin_dst.weight"])
        elif name == "gin":
            names += [f"convs.{i}.nn.0.weight", f"convs.{i}.nn.2.weight"]
    return names


@pytest.mark.parametrize("name", encoders.NAMES)
def test_named_weight_matrices(name):
    model = encoders.build(name, IN, SIZES)
    named = named_weight_matrices(model)
    assert [k for k, _ in named] == _expected_weight_names(name, model)
    params = dict(model.named_parameters())
    for k, w in named:
        assert w is params[k] and w.dim() == 2
    ref = encoder_weights(model)
    assert len(ref) == len(named) and all(a is b for (_, a), b in zip(named, ref))
    assert not any("att" in k for k, _ in named)


def test_named_weight_matrices_of_other_modules():
    fast = GCNEncoder(IN, SIZES)
    named = named_weight_matrices(fast)
    assert [k for k, _ in named] == ["convs.0.lin.weight", "convs.1.lin.weight"]
    assert all(a is b for (_, a), b in zip(named, encoder_weights(fast)))
    lin = torch.nn.Linear(3, 4)
    assert named_weight_matrices(lin) == [("weight", lin.weight)]


@pytest.mark.parametrize("name", encoders.NAMES)
def test_lazy_input_size(name):
    model = encoders.build(name, -1, SIZES)
    with pytest.raises(ValueError) as e:
        named_weight_matrices(model)
    assert "lazily uninitialised" in str(e.value) and "\n" not in str(e.value)
    assert model(*graph()).shape == (40, 16)
    assert [k for k, _ in named_weight_matrices(model)] == _expected_weight_names(name, model)
    assert named_weight_matrices(model)[0][1].shape[1] == IN
