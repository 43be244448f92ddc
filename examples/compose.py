"""Compose it yourself: a user-written PyG encoder + a shipped method (GRACE) + WERank, in plain PyTorch.

    python examples/compose.py                      # Cora (needs the data root), 100 epochs
    python examples/compose.py --dataset csbm --epochs 20
"""

import argparse

import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import GCNConv

from bgrl_werank import methods, werank_penalty
from bgrl_werank.augment import drop_edges, mask_features
from bgrl_werank.data import get_splits, load_dataset
from bgrl_werank.eval import linear_probe


class MyEncoder(nn.Module):  # any module with forward(x, edge_index) works with every method
    def __init__(self, in_channels, hidden=256, out_channels=128):
        super().__init__()
        self.conv1, self.conv2 = GCNConv(in_channels, hidden), GCNConv(hidden, out_channels)
        self.out_channels = out_channels

    def forward(self, x, edge_index):
        return torch.relu(self.conv2(torch.relu(self.conv1(x, edge_index)), edge_index))


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="cora")
    p.add_argument("--epochs", type=int, default=100)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    data = load_dataset(args.dataset, row_normalize=True)
    method = methods.build("grace", MyEncoder(data.num_features), tau=0.4)
    opt = torch.optim.Adam(method.parameters(), lr=5e-4, weight_decay=1e-5)
    g = torch.Generator().manual_seed(0)

    def view(pe, pf):
        return Data(x=mask_features(data.x, pf, g), edge_index=drop_edges(data.edge_index, pe, g))

    for epoch in range(args.epochs):
        opt.zero_grad()
        terms = method.loss(view(0.2, 0.3), view(0.4, 0.4))
        loss = terms["loss"] + werank_penalty(method.regularised_weights(), alpha=0.01)
        loss.backward()
        opt.step()
        method.step_end(epoch, args.epochs)  # EMA etc.; GRACE has none
    z = method.embed(data)
    protocol = "public" if args.dataset in ("cora", "citeseer", "pubmed") else "random"
    result = linear_probe(z, data.y, get_splits(data, protocol, num_splits=3))
    print(f"{args.dataset}: GRACE + WERank with a custom encoder, loss {loss.item():.3f}, "
          f"test accuracy {100 * result.mean:.1f} ± {100 * result.std:.1f}")
    return result.mean


if __name__ == "__main__":
    main()
