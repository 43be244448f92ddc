"""A new method written against the public API, then trained by the framework's own train.py.

SimSiam on graphs (Chen & He, 2021): one encoder, a predictor on one branch, a stop-gradient on the
other, no negatives and no target network. Registering it makes it a config choice like the shipped
ones (`method.name: simsiam`), with WERank, checkpoints, sweeps and reports for free.

    python examples/custom_method.py --config configs/cora.yaml --set train.epochs=100
"""

import sys

import torch.nn.functional as F
from torch import nn

from bgrl_werank import encoders, methods
from bgrl_werank.cli import train_main


class SimSiam(methods.Method):
    """loss = ½·(2 − cos(p(z₁), sg(z₂)) − cos(p(z₂), sg(z₁))), cosines averaged over nodes."""

    name = "simsiam"

    def __init__(self, encoder: nn.Module, predictor_hidden: int = 512):
        super().__init__(encoder)
        d = encoder.out_channels
        self.predictor = nn.Sequential(nn.Linear(d, predictor_hidden), nn.BatchNorm1d(predictor_hidden),
                                       nn.ReLU(), nn.Linear(predictor_hidden, d))

    @property
    def heads(self):
        return {"predictor": self.predictor}  # WERank can regularise it too (werank.include_heads)

    def loss(self, view1, view2):
        z1 = self.encoder(view1.x, view1.edge_index)
        z2 = self.encoder(view2.x, view2.edge_index)
        c1 = F.cosine_similarity(self.predictor(z1), z2.detach(), dim=-1).mean()
        c2 = F.cosine_similarity(self.predictor(z2), z1.detach(), dim=-1).mean()
        return {"loss": 1.0 - (c1 + c2) / 2, "cosine_1": c1, "cosine_2": c2}


methods.register("simsiam", SimSiam)
assert "simsiam" in methods.names() and "gcn" in encoders.available()

if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(train_main(args + ["--set", "method.name=simsiam"] if "method.name=" not in " ".join(args) else args))
