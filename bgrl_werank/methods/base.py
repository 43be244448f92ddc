"""The contract every self-supervised method meets, and the pieces methods share."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..encoders import named_weight_matrices


class BatchView:
    """A view of a sampled subgraph: ``x`` and ``edge_index`` as the backend made them, and
    ``loss_nodes``, the (local) rows the loss is computed on (long tensor; None: every row)."""

    __slots__ = ("x", "edge_index", "loss_nodes")

    def __init__(self, x: Any, edge_index: Any, loss_nodes: Tensor | None) -> None:
        self.x, self.edge_index, self.loss_nodes = x, edge_index, loss_nodes


def loss_rows(view: Any, h: Tensor) -> Tensor:
    """The rows of ``h`` (a per-node output on ``view``) that ``view``'s loss is computed on."""
    rows = getattr(view, "loss_nodes", None)
    return h if rows is None else h.index_select(0, rows)


class Method(nn.Module):
    """A two-view self-supervised method around an encoder.

    A method owns its modules (the online encoder, its heads, a target network if it has one) and
    implements :meth:`loss`. The trainer — or a user's own loop — does, per step::

        terms = method.loss(view1, view2)          # {"loss": scalar, and each named term}
        loss = terms["loss"] + werank_penalty(method.regularised_weights(), alpha)
        loss.backward(); optimizer.step(); method.step_end(step, total_steps)
        z = method.embed(data)                     # frozen representations for the probe

    Views are anything with ``.x`` and ``.edge_index`` that the encoder accepts as
    ``encoder(view.x, view.edge_index)`` — PyG ``Data`` on the plain backend; on the fast CPU backend
    ``edge_index`` is the view's normalised adjacency (as PyG's ``adj_t`` convention allows).

    **Mini-batches** (``train.batching: subgraph``) meet a method here and nowhere else: a view of a
    sampled subgraph is a :class:`BatchView` whose ``loss_nodes`` are the rows (the batch's seed
    nodes) on which the loss is computed; the other nodes only feed their neighbours' messages. A
    method computes its per-node outputs through :meth:`represent` (or :meth:`encode`), which run
    the encoder on the whole view and keep those rows, so every method's loss is the loss of the
    seeds. A view without ``loss_nodes`` (the full graph) keeps every row. ``step_end`` gets step
    counts (``total_steps`` = epochs × batches per epoch), never epochs.

    Subclasses set :attr:`heads` (their extra modules by name, e.g. ``{"predictor": ...}``) and
    override :meth:`loss`, and where they need it :meth:`step_end`, :meth:`backward` (e.g. to free
    one view's activations before the next is made) and :meth:`frozen_modules`.

    Args:
        encoder: any ``nn.Module`` with ``forward(x, edge_index)``.
    """

    name = "method"

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    # ------------------------------------------------------------------ the contract
    @property
    def heads(self) -> dict[str, nn.Module]:
        """Modules trained with the encoder but not used by :meth:`embed` (predictor, projector)."""
        return {}

    def loss(self, view1: Any, view2: Any) -> dict[str, Tensor]:
        """The loss of one step on two views, as named terms; ``"loss"`` is what is minimised."""
        raise NotImplementedError

    def represent(self, view: Any, encoder: nn.Module | None = None) -> Tensor:
        """``encoder`` (default: the online encoder) on ``view``, restricted to its ``loss_nodes``
        when it has them (a :class:`BatchView`): the rows a loss is computed on."""
        encoder = self.encoder if encoder is None else encoder
        return loss_rows(view, encoder(view.x, view.edge_index))

    def encode(self, view1: Any, view2: Any) -> tuple[Tensor, Tensor]:
        """The online encoder's outputs on both views (what most losses start from), on their loss rows."""
        return self.represent(view1), self.represent(view2)

    def backward(self, view1: Any, view2: Any) -> dict[str, Tensor]:
        """Back-propagate this step's loss; returns the terms, detached. The default is
        ``loss(...)["loss"].backward()``; methods override it to save memory with the same gradients."""
        terms = self.loss(view1, view2)
        terms["loss"].backward()
        return {k: v.detach() for k, v in terms.items()}

    def step_end(self, step: int, total_steps: int) -> dict[str, float]:
        """End-of-step work after the optimizer step (BGRL: the EMA update); returns values to log.

        ``step`` is the 0-based index of the step just taken, out of ``total_steps``; a no-op here."""
        return {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimizer updates: every parameter that requires grad (a target network's don't)."""
        return [p for p in self.parameters() if p.requires_grad]

    def frozen_modules(self) -> list[nn.Module]:
        """Modules updated without gradients (BGRL's target encoder); none here."""
        return []

    # ------------------------------------------------------------------ WERank's matrices
    def named_regularised_weights(self, include_heads: bool = False) -> list[tuple[str, Tensor]]:
        """The matrices WERank acts on, named: the encoder's weight matrices in layer order
        (``encoder.convs.0.lin.weight`` …), then each head's when ``include_heads``."""
        out = [(f"encoder.{n}", w) for n, w in named_weight_matrices(self.encoder)]
        if include_heads:
            for head, module in self.heads.items():
                out += [(f"{head}.{n}", w) for n, w in named_weight_matrices(module)]
        return out

    def regularised_weights(self, include_heads: bool = False) -> list[Tensor]:
        """The tensors of :meth:`named_regularised_weights` (what :func:`werank_penalty` takes)."""
        return [w for _, w in self.named_regularised_weights(include_heads)]

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def embed(self, data: Any, encoder: nn.Module | None = None, batch_size: int | None = None) -> Tensor:
        """Representations of ``data`` (the un-augmented graph) by the frozen online encoder, in eval
        mode; ``encoder`` replaces it (e.g. a copy with re-estimated BatchNorm statistics).
        ``batch_size``: computed layer by layer over batches of that many nodes
        (:func:`bgrl_werank.inference.layerwise_forward`; ``eval.inference: layerwise``), the same
        values within float tolerance in bounded memory; None: one whole-graph forward pass."""
        encoder = self.encoder if encoder is None else encoder
        if batch_size is not None:
            from ..inference import layerwise_forward

            return layerwise_forward(encoder, data.x, data.edge_index, batch_size)
        was_training = encoder.training
        encoder.eval()
        try:
            return encoder(data.x, data.edge_index)
        finally:
            encoder.train(was_training)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"
