"""The plain implementation: BGRL written directly with PyG's and PyTorch's stock modules.

This is the yardstick the fast path is held to — the tests compare losses and gradients of the two
on small graphs, and ``benchmarks/bench_epoch.py --compare-plain`` trains both and probes them. It
is what the BGRL reference does: dense features masked by copying, an edge list per view that
``GCNConv(normalize=True)`` normalises in every layer and pass, ``nn.PReLU``, ``nn.Linear``,
``torch.sparse``/scatter message passing, the loss through ``F.cosine_similarity`` and WERank
through autograd. It is not used for training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv

from .augment import drop_edges, mask_features
from .losses.werank import _alphas, gram
from .models import BGRL
from .models.encoder import prelu_slopes


class PlainGCNEncoder(nn.Module):
    """``GCNConv → BatchNorm1d → PReLU`` per layer with PyG defaults; same parameter names as :class:`GCNEncoder`."""

    def __init__(self, in_channels: int, layer_sizes: Sequence[int], batchnorm_momentum: float = 0.99,
                 prelu: str = "shared") -> None:
        super().__init__()
        sizes = [in_channels, *layer_sizes]
        self.convs = nn.ModuleList(GCNConv(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(o, momentum=batchnorm_momentum) for o in sizes[1:])
        self.acts = nn.ModuleList(nn.PReLU(prelu_slopes(prelu, o)) for o in sizes[1:])
        self.layer_sizes = list(layer_sizes)

    @property
    def out_channels(self) -> int:
        return self.layer_sizes[-1]

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for conv, norm, act in zip(self.convs, self.norms, self.acts):
            x = act(norm(conv(x, edge_index)))
        return x

    def reset_parameters(self) -> None:
        for m in (*self.convs, *self.norms, *self.acts):
            m.reset_parameters()


class PlainPredictor(nn.Module):
    """``Linear → PReLU → Linear``; same parameter names as :class:`MLPPredictor`."""

    def __init__(self, in_channels: int, hidden_channels: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_channels, hidden_channels), nn.PReLU(1), nn.Linear(hidden_channels, in_channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def build_plain_bgrl(
    in_channels: int,
    layer_sizes: Sequence[int],
    predictor_hidden: int = 512,
    batchnorm_momentum: float = 0.99,
    target_init: str = "reinit",
    prelu: str = "shared",
) -> BGRL:
    """A BGRL of plain modules, drawing its initial weights in the same order as :func:`build_bgrl`."""
    encoder = PlainGCNEncoder(in_channels, layer_sizes, batchnorm_momentum, prelu)
    return BGRL(encoder, PlainPredictor(encoder.out_channels, predictor_hidden), target_init)


def plain_view(x: Tensor, edge_index: Tensor, edge_drop_p: float, feat_mask_p: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """A view as the reference makes it: the kept edge list and a masked copy of the dense features.

    Draws the same random numbers in the same order as :class:`bgrl_werank.augment.ViewBuilder`.
    """
    kept = drop_edges(edge_index, edge_drop_p, generator)
    return mask_features(x, feat_mask_p, generator), kept


def plain_bgrl_loss_term(q: Tensor, y: Tensor) -> Tensor:
    """1 − cos(q, sg(y)) averaged over nodes, through ``F.cosine_similarity`` and autograd."""
    return 1.0 - torch.nn.functional.cosine_similarity(q, y.detach(), dim=-1).mean()


def plain_bgrl_loss(q1: Tensor, y2: Tensor, q2: Tensor, y1: Tensor) -> Tensor:
    """The symmetrised BGRL loss written with stock operations (cf. :func:`bgrl_werank.bgrl_loss`)."""
    return plain_bgrl_loss_term(q1, y2) + plain_bgrl_loss_term(q2, y1)


def plain_werank_penalty(weights: Sequence[Tensor], alpha: float | Sequence[float] = 1.0) -> Tensor:
    """Σ α_l ‖G_l − I‖_F through autograd (``torch.linalg.matrix_norm``), cf. :func:`bgrl_werank.werank_penalty`."""
    weights = list(weights)
    total = weights[0].new_zeros(())
    for a, w in zip(_alphas(alpha, len(weights)), weights):
        if a != 0.0:
            g = gram(w)
            total = total + a * torch.linalg.matrix_norm(g - torch.eye(g.shape[0], dtype=g.dtype))
    return total


def plain_trainer(cfg, graph, run_dir):
    """A :class:`~bgrl_werank.train.trainer.Trainer` whose model, views, losses and optimizer are the plain ones.

    The trainer's own loop (schedules, sequential backward, EMA) around :func:`build_plain_bgrl`,
    :func:`plain_view` on dense features, :func:`plain_bgrl_loss_term`, :func:`plain_werank_penalty`
    and PyTorch's default AdamW: the yardstick for training trajectories (tests) and the
    ``--compare-plain`` benchmark. Same seed, same initial weights and views as the fast trainer.
    """
    from .train.trainer import Trainer

    class PlainTrainer(Trainer):
        def __init__(self) -> None:
            super().__init__(cfg, graph, run_dir, progress=False)
            torch.manual_seed(cfg.seed)  # the plain model draws the fast model's initial weights again
            m = cfg.model
            self.model = build_plain_bgrl(graph.x.size(1), m.layer_sizes, m.predictor_hidden, m.batchnorm_momentum, m.target_init, m.prelu)
            self.optimizer = torch.optim.AdamW(self.model.trainable_parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
            self.loss_term, self.penalty = plain_bgrl_loss_term, plain_werank_penalty
            self.dense_x = graph.x.to_dense() if graph.x.layout != torch.strided else graph.x

        def make_views(self):
            return [plain_view(self.dense_x, graph.edge_index, v.edge_drop_p, v.feat_mask_p, self.generator) for v in cfg.augment]

    return PlainTrainer()
