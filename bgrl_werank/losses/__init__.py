"""Self-supervised objectives and the WERank regularizer (one concept per module)."""

from .bgrl import bgrl_loss, bgrl_loss_term
from .werank import WERank, encoder_weights, gram, werank_penalty

__all__ = ["bgrl_loss", "bgrl_loss_term", "werank_penalty", "WERank", "encoder_weights", "gram"]
