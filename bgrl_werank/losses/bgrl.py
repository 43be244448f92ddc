"""The BGRL objective (Thakoor et al., 2022), written as a pure function."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def bgrl_loss(q1: Tensor, y2: Tensor, q2: Tensor, y1: Tensor) -> Tensor:
    """Symmetrised BGRL loss 2 − cos(q₁, sg(y₂)) − cos(q₂, sg(y₁)), each cosine averaged over nodes.

    ``q`` are the online network's predictions of each view, ``y`` the target network's
    representations of the other view. The targets are detached here (stop-gradient), so passing
    tensors that require grad is safe. The loss lies in [0, 4]; minimising it raises the cosines.

    Args:
        q1: predictions for view 1.
        y2: target representations of view 2.
        q2: predictions for view 2.
        y1: target representations of view 1.

    Returns:
        A scalar tensor.

    Shapes:
        - q1, y2, q2, y1: (num_nodes, dim)
        - output: ()
    """
    return bgrl_loss_term(q1, y2) + bgrl_loss_term(q2, y1)


def bgrl_loss_term(q: Tensor, y: Tensor) -> Tensor:
    """One half of :func:`bgrl_loss`: 1 − cos(q, sg(y)), the cosine averaged over nodes.

    The trainer back-propagates the two halves one after the other, so that only one view's online
    activations are alive at a time; the sum of their gradients is the gradient of the whole loss.
    """
    return 1.0 - F.cosine_similarity(q, y.detach(), dim=-1).mean()
