"""The BGRL predictor: Linear → PReLU → Linear."""

from __future__ import annotations

from torch import Tensor, nn

from ..ops import FastLinear, FastPReLU


class MLPPredictor(nn.Module):
    """Two-layer MLP predicting the target's representation from the online one.

    Args:
        in_channels: representation size (the encoder's output size).
        hidden_channels: hidden size (default ``512``).
        out_channels: output size; defaults to ``in_channels``.

    Shapes:
        - input: (N, in_channels)
        - output: (N, out_channels)
    """

    def __init__(self, in_channels: int, hidden_channels: int = 512, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.net = nn.Sequential(
            FastLinear(in_channels, hidden_channels, bias=True),
            FastPReLU(1),
            FastLinear(hidden_channels, out_channels, bias=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def reset_parameters(self) -> None:
        for m in self.net:
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
