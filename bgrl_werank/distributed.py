"""Data-parallel training with ``torch.distributed``: ``torchrun --nproc-per-node N train.py --config …``.

torchrun starts N processes and gives each ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``
and ``MASTER_PORT``; :func:`from_env` reads them and :func:`init` joins the process group (gloo on
CPU, NCCL on CUDA, each process on ``cuda:LOCAL_RANK``) with a finite timeout
(``distributed.timeout_s``), so a process whose peers stopped answering fails instead of waiting
forever. Without those variables a run is one process, as always.

What is shared and how (the trainer does it; docs/usage.md, "Data-parallel training"):

* **Batches.** Only ``train.batching: subgraph`` runs data-parallel. The sampler's permutation is
  drawn from the same seeded generator on every process, so all agree on an epoch's batches; its
  batch count is rounded up to a multiple of N, each step takes N consecutive batches and process r
  trains on the r-th. Steps per epoch = batches / N; the learning-rate and EMA schedules count
  those global steps.
* **Views.** Process r draws its views from its own generator (seed, then seed + r·:data:`REPLICA_SEED`),
  whose states all go into rank 0's checkpoint, so ``--resume`` restores each process's stream.
* **Gradients** are averaged by ``DistributedDataParallel`` around one module whose forward is the
  method's loss plus the WERank penalty (:class:`StepLoss`).
* **BatchNorm** is per process (each batch's own statistics, as one process trains); DDP broadcasts
  rank 0's buffers (running statistics) at each step, so they follow rank 0's batches everywhere.

``train.replicas: N`` is the same arithmetic in one process (the trainer computes the N batches of a
step one after the other, each from its replica's generator and rank 0's buffers, and averages their
gradients): the reference a data-parallel run is tested against, and a way to reproduce one without N
processes.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .config import ConfigError

# Seed offset between the view generators of consecutive replicas (a prime; replica 0 keeps the run's seed,
# so a one-process run draws exactly what it always drew).
REPLICA_SEED = 1_000_003


@dataclass
class World:
    """Where this process stands in a data-parallel run (``size`` 1: a plain one-process run)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    initialized: bool = False  # this process joined a torch.distributed process group

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer; launch with torchrun, which sets it") from None


def from_env() -> World:
    """The world torchrun describes in the environment (``WORLD_SIZE`` unset or 1: one process)."""
    size = _int_env("WORLD_SIZE", 1)
    rank = _int_env("RANK", 0)
    local = _int_env("LOCAL_RANK", rank)
    if size < 1 or not 0 <= rank < size:
        raise ConfigError(f"RANK={rank} and WORLD_SIZE={size} do not describe a process of a group; launch with torchrun")
    return World(rank, size, local)


def check_config(cfg: Any, world: World) -> None:
    """One-line ConfigErrors for settings a data-parallel (or replica-emulating) run cannot have."""
    replicas = int(cfg.train.replicas)
    if world.distributed and replicas != 1:
        raise ConfigError(f"train.replicas={replicas} emulates data-parallel processes in one, but this run already has "
                          f"{world.size} (torchrun); drop --set train.replicas (or run one process)")
    if (world.distributed or replicas > 1) and cfg.train.batching != "subgraph":
        n = world.size if world.distributed else replicas
        what = f"{n} torchrun processes" if world.distributed else f"train.replicas={n}"
        raise ConfigError(f"{what} need mini-batches to share, but train.batching=full trains one step on the whole "
                          f"graph; use --set train.batching=subgraph (and train.batch_size), or one process")


def device_for(cfg: Any, world: World) -> torch.device | None:
    """The device of this process under torchrun (``cuda:LOCAL_RANK`` for a CUDA run), None: the config's own."""
    if not world.distributed:
        return None
    from .backends import resolve_device

    device = resolve_device(cfg.device)
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={world.local_rank} but this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s); start at most that many processes per node (--nproc-per-node)")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return device


def init(world: World, device: torch.device, timeout_s: float) -> None:
    """Join torchrun's process group (env:// rendezvous): gloo on CPU, NCCL on CUDA."""
    import torch.distributed as dist

    if not world.distributed or world.initialized:
        return
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; install a build with it, or run one process")
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, rank=world.rank, world_size=world.size,
                            timeout=_dt.timedelta(seconds=float(timeout_s)), **kwargs)
    world.initialized = True


def shutdown(world: World) -> None:
    import torch.distributed as dist

    if world.initialized and dist.is_initialized():
        dist.destroy_process_group()
    world.initialized = False


# How gloo and NCCL word a lost peer or a timed-out collective: gloo raises a plain RuntimeError
# ("[.../gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:37764 ...").
# a collective past the process group's timeout: "Application timeout caused pair closure".
_LOST_PEER = ("gloo/", "Connection closed by peer", "Connection reset by peer", "pair closure", "NCCL", "ProcessGroup",
              "Timed out", "timed out", "timeout")


def is_dist_failure(e: BaseException) -> bool:
    """Whether ``e`` is torch.distributed reporting a lost peer or a timed-out collective."""
    import torch.distributed as dist

    err = getattr(dist, "DistError", None)
    if err is not None and isinstance(e, err):
        return True
    under_torchrun = os.environ.get("WORLD_SIZE", "1") not in ("", "1")  # the group may be destroyed by now
    return isinstance(e, RuntimeError) and under_torchrun and any(s in str(e) for s in _LOST_PEER)


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """The element-wise sum of ``values`` over the processes (float64)."""
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather_object(obj: Any, world: World) -> list[Any]:
    import torch.distributed as dist

    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module: nn.Module) -> None:
    """Every buffer of ``module`` (BatchNorm running statistics) set to rank 0's."""
    import torch.distributed as dist

    for buf in module.buffers():
        dist.broadcast(buf, 0)


class StepLoss(nn.Module):
    """One training step's loss as a module: the method's loss on two views plus the WERank penalty on its
    matrices. DistributedDataParallel wraps this (not the method), so its one forward and one backward per
    step carry everything that has a gradient, and the method's contract is unchanged.

    Returns ``(terms, penalty)``: the method's named terms (``"loss"`` is its loss) and the penalty
    (a zero scalar when WERank is off)."""

    def __init__(self, method: nn.Module, penalty: Callable[..., Tensor] | None, include_heads: bool, alpha: Any) -> None:
        super().__init__()
        self.method = method
        self.penalty, self.include_heads, self.alpha = penalty, include_heads, alpha

    def forward(self, view1: Any, view2: Any) -> tuple[dict[str, Tensor], Tensor]:
        terms = self.method.loss(view1, view2)
        if self.penalty is None:
            return terms, terms["loss"].new_zeros(())
        return terms, self.penalty(self.method.regularised_weights(self.include_heads), self.alpha)


def wrap(step_loss: StepLoss, device: torch.device) -> nn.Module:
    """``DistributedDataParallel`` around the step's loss (it broadcasts rank 0's parameters and buffers now)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    import inspect

    ids = [device.index] if device.type == "cuda" else None
    # rank 0's buffers broadcast before every forward (newer torch names the option forward_sync_buffers)
    sync = ({"forward_sync_buffers": True} if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
            else {"broadcast_buffers": True})
    return DDP(step_loss, device_ids=ids, output_device=device.index if ids else None, **sync)


def replica_generator(seed: int, replica: int) -> torch.Generator:
    """The view generator of replica ``replica`` (replica 0: ``seed`` itself)."""
    return torch.Generator().manual_seed(seed + replica * REPLICA_SEED)


class BufferSnapshot:
    """A copy of a module's buffers, to emulate DDP's broadcast of rank 0's buffers in one process."""

    def __init__(self, module: nn.Module) -> None:
        self.values = [b.detach().clone() for b in module.buffers()]
        self.module = module

    def restore(self) -> None:
        with torch.no_grad():
            for b, v in zip(self.module.buffers(), self.values):
                b.copy_(v)
