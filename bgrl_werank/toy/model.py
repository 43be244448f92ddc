"""Deep linear networks without bias, and their spectra."""

from __future__ import annotations

import torch
from torch import Tensor, nn

INITS = ("gaussian", "orthogonal")


class LinearNet(nn.Module):
    """``num_layers`` bias-free ``width × width`` linear maps applied in sequence: z = W_L ⋯ W_1 x.

    Args:
        num_layers: L ≥ 1.
        width: input = hidden = output size (16 in the paper).
        init: ``"gaussian"``: i.i.d. N(0, (init_scale / sqrt(width))²) entries, so the singular values
            spread over roughly [0, 2·init_scale] (quarter-circle law) with a few already near 0;
            ``"orthogonal"``: init_scale times a random orthogonal matrix (every singular value equals
            init_scale).
        init_scale: see ``init``. Small values (≪ 1) put the network in the regime where implicit
            regularisation of depth shows: modes grow one after another, weak ones last.
        generator: random stream of the initialisation.

    Shapes:
        - input: (N, width)
        - output: (N, width)
    """

    def __init__(self, num_layers: int, width: int = 16, init: str = "gaussian", init_scale: float = 0.1,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.layers = nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(num_layers))
        with torch.no_grad():
            for layer in self.layers:
                if init == "gaussian":
                    w = torch.randn(width, width, generator=generator) * (init_scale / width**0.5)
                else:
                    q, r = torch.linalg.qr(torch.randn(width, width, generator=generator, dtype=torch.float64))
                    q = q * torch.sign(torch.diagonal(r))  # Haar-distributed
                    w = (q * init_scale).to(torch.float32)
                layer.weight.copy_(w)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def singular_values(w: Tensor) -> list[float]:
    """Singular values of a matrix, largest first, as plain floats (float64 SVD)."""
    return torch.linalg.svdvals(w.detach().to(torch.float64)).tolist()


def embedding_spectrum(net: LinearNet, x: Tensor) -> list[float]:
    """Eigenvalues (= singular values) of the embedding covariance of ``net`` on ``x``, largest first.

    The covariance is (1/N) Σᵢ (zᵢ − z̄)(zᵢ − z̄)ᵀ with z = W_L ⋯ W_1 x. It is computed in float64 as
    the squared singular values of the centred embeddings / sqrt(N), so that directions collapsed to
    1e-12 and below are resolved instead of being lost to float32 rounding or to tiny negative
    eigenvalues.

    Shapes:
        - x: (N, width)
        - output: width floats
    """
    with torch.no_grad():
        z = x.detach().to(torch.float64)
        for layer in net.layers:
            z = z @ layer.weight.detach().to(torch.float64).T
        z = z - z.mean(dim=0)
        return (torch.linalg.svdvals(z / z.shape[0] ** 0.5) ** 2).tolist()
