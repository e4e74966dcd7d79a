"""Data-parallel training over a torch.distributed process group (what `torchrun` starts).

Every process (rank) runs the same model code on the same training data. The trainer draws an
epoch's plan identically on every rank (same seed, same stream); each rank takes its slice of
every planned batch (`shard`), and the gradients are averaged over the ranks, weighted by slice
size, before the optimiser step every rank takes (`average_gradients`). The weights therefore
stay the same on all ranks, and N processes train at the batch one process would: the planned
batch is the global batch, so a model's batch settings mean the same thing at any N.

What differs from one process: each rank draws its slice's own randomness (dropout, negatives,
history cuts) from its own stream, and a loss that compares the items of a batch with each
other (in-batch negatives) sees only its slice. Validation runs on every rank on the same
weights; rank 0's row is the one kept. Only rank 0 writes checkpoints and publishes.

Backends: gloo on CPU, NCCL on CUDA (`backend_for`); a CPU-resident trainer (the show prior)
under NCCL all-reduces through a gloo side group.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place in the process group (rank 0 of 1 when there is none)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> World:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(group=_cpu_group())

    def from_leader(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (any picklable object)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, group=_cpu_group())
        return box[0]

    def on_leader(self, action: Callable[[], T], errors: tuple[type[Exception], ...]) -> T | None:
        """Run `action` on rank 0 alone (None elsewhere); an exception of `errors` it raises
        is raised on every rank, so none waits for a peer that gave up. A barrier too."""
        result, failure = None, None
        if self.leader:
            try:
                result = action()
            except errors as exc:
                failure = exc
        failure = self.from_leader(failure)
        if failure is not None:
            raise failure
        return result

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value, group=_cpu_group())
        return out


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


@functools.cache
def _cpu_group() -> Any:
    """A group that carries CPU tensors and pickled objects: the default one under gloo, a
    gloo side group under NCCL."""
    if dist.get_backend() == "gloo":
        return dist.group.WORLD
    return dist.new_group(backend="gloo")


def _group_for(device: torch.device) -> Any:
    return (
        dist.group.WORLD
        if dist.get_backend() != "gloo" and device.type == "cuda"
        else (_cpu_group())
    )


# ---- batches --------------------------------------------------------------------------------
def batch_size(batch: Any) -> int:
    """Items in a planned batch: the length of its first sequence (a tuple's first member)."""
    if isinstance(batch, tuple) and batch:
        return batch_size(batch[0])
    try:
        return len(batch)
    except TypeError:
        return 1


def shard(batch: Any, rank: int, size: int) -> Any:
    """Rank `rank`'s slice of `batch`: sequences (tensors, arrays, lists) cut along the first
    axis into `size` near-equal contiguous parts; a tuple is cut member by member (each by its
    own length). Anything else is taken whole."""
    if isinstance(batch, tuple):
        return tuple(shard(part, rank, size) for part in batch)
    if isinstance(batch, torch.Tensor | np.ndarray | list):
        n = len(batch)
        start, stop = rank * n // size, (rank + 1) * n // size
        return batch[start:stop]
    return batch


# ---- gradients and weights ------------------------------------------------------------------
def average_gradients(params: Iterable[torch.nn.Parameter], weight: float) -> float:
    """Set every parameter's gradient to the `weight`-weighted mean of the ranks' gradients
    (a rank with an empty slice passes weight 0); returns the summed weight. A parameter no
    rank computed a gradient for keeps none (the optimiser skips it, as in one process).
    One all-reduce per device and dtype, over the gradients flattened into one buffer."""
    total = torch.tensor([float(weight)], dtype=torch.float64)
    dist.all_reduce(total, group=_cpu_group())
    buckets: dict[tuple[torch.device, torch.dtype], list[torch.nn.Parameter]] = {}
    for p in params:
        if p.requires_grad:
            buckets.setdefault((p.device, p.dtype), []).append(p)
    for (device, _), group in buckets.items():
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in group]
        had = torch.tensor([p.grad is not None for p in group], dtype=group[0].dtype, device=device)
        flat = torch.cat([*(g.reshape(-1) * weight for g in grads), had])  # (n_values + n_params,)
        dist.all_reduce(flat, group=_group_for(device))
        values, had = flat[: -len(group)] / max(float(total), 1e-12), flat[-len(group) :]
        for p, g, seen in zip(group, values.split([g.numel() for g in grads]), had, strict=True):
            p.grad = g.reshape(p.shape).clone() if seen > 0 else None
    return float(total)


def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (identical starting weights)."""
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0, group=_group_for(tensor.device))
