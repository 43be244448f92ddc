"""Self-supervised objectives and the WERank regularizer (one concept per module)."""

from .bgrl import bgrl_loss, bgrl_loss_term
from .contrastive import grace_loss, info_nce_loss
from .decorrelation import (
    barlow_twins_loss,
    barlow_twins_terms,
    cca_ssg_loss,
    cca_ssg_terms,
    vicreg_loss,
    vicreg_terms,
)
from .werank import WERank, encoder_weights, gram, werank_penalty

__all__ = [
    "bgrl_loss", "bgrl_loss_term", "werank_penalty", "WERank", "encoder_weights", "gram",
    "grace_loss", "info_nce_loss",
    "barlow_twins_loss", "barlow_twins_terms", "cca_ssg_loss", "cca_ssg_terms", "vicreg_loss", "vicreg_terms",
]
