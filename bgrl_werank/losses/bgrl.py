"""The BGRL objective (Thakoor et al., 2022), written as a pure function."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-8  # F.cosine_similarity's: each norm is clamped to at least this


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

    Same value as ``1 − F.cosine_similarity(q, y, dim=-1).mean()`` (each norm clamped to ≥ 1e-8),
    with a closed-form gradient (tested against autograd through ``F.cosine_similarity``): with
    n = max(‖q_i‖, ε), m = max(‖y_i‖, ε) and c_i the cosine, ∂c_i/∂q_i = y_i/(n·m) − c_i·q_i/(n·‖q_i‖)
    (0 for q_i = 0). Like PyTorch's, the clamp enters the value but not the gradient of the norm.
    Four passes over the (N, d) tensors forward and five backward, where autograd through
    ``cosine_similarity`` makes several times as many (6.5 vs 19.5 ms for Coauthor CS, 2 threads).
    """
    if q.dim() != 2 or q.shape != y.shape:
        return 1.0 - F.cosine_similarity(q, y.detach(), dim=-1).mean()
    return _CosineLoss.apply(q, y.detach())


class _CosineLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, y: Tensor) -> Tensor:  # type: ignore[override]
        norm_q = torch.linalg.vector_norm(q, dim=1)
        clamped_q = norm_q.clamp_min(_EPS)
        scale = 1.0 / (clamped_q * torch.linalg.vector_norm(y, dim=1).clamp_min(_EPS))
        cos = torch.linalg.vecdot(q, y, dim=1) * scale
        ctx.save_for_backward(q, y, norm_q, clamped_q, scale, cos)
        return 1.0 - cos.mean()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        q, y, norm_q, clamped_q, scale, cos = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        g = grad / q.shape[0]
        a = (scale * -g).unsqueeze(1)  # ∂L/∂q_i = −g·(y_i/(n·m) − c_i·q_i/(n·‖q_i‖))
        b = torch.where(norm_q > 0, cos / (clamped_q * norm_q), torch.zeros_like(cos)).mul_(g).unsqueeze(1)
        return torch.addcmul(y * a, q, b), None
