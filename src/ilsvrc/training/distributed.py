"""Data-parallel training across processes with PyTorch's own engine (torchrun + DDP).

`ilsvrc train` runs as one process, or as N processes started by torchrun, which sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Then:

- the process group uses gloo on the CPU and NCCL on GPUs (each process takes GPU LOCAL_RANK);
- `--batch-size` is the GLOBAL batch (the papers' 128 or 256): each of the N processes takes
  batch/N images of every global batch, so N processes step exactly as one process would (the sample
  order comes from (seed, epoch) on every rank, and DDP averages the gradients);
- the loss, the accuracy and the evaluation counts are summed over all ranks;
- only rank 0 writes files (config, metrics, checkpoints, pictures) and prints;
- decisions to stop (time limit, a signal on any rank, a loss no longer finite) are taken by all
  ranks together, with one small all-reduce every `loop.SYNC_EVERY` steps and at each epoch's end (not
  at every step: the ranks agree there on how many steps the time limit still leaves room for);
- a rank whose share of a batch has no readable image takes part in the step with an empty batch
  (a zero gradient) rather than making the others wait for it (see `loop._step`).

Batch norm statistics and dropout masks are per process, so those networks match a single process
only in distribution, not bit for bit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import IlsvrcError


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> tuple[Context, torch.device]:
    """Join the process group torchrun prepared (if any); returns the context and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(), torch.device(device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local)
        return Context(rank, world, local), torch.device("cuda", local)
    return Context(rank, world, local), torch.device("cpu")


def teardown(ctx: Context) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batches(batches: list[list[int]], ctx: Context) -> list[list[int]]:
    """This rank's share of every global batch."""
    if not ctx.enabled:
        return batches
    size = len(batches[0]) if batches else 0
    if size % ctx.world:
        raise IlsvrcError(
            f"The global batch of {size} images cannot be split over {ctx.world} processes; use a "
            f"--batch-size that is a multiple of {ctx.world} (it is the total over all processes)."
        )
    share = size // ctx.world
    return [b[ctx.rank * share : (ctx.rank + 1) * share] for b in batches]


def sum_floats(values: list[float], ctx: Context, device: torch.device) -> list[float]:
    """Element-wise sum over all ranks (float64)."""
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def max_over_ranks(values: list[int], ctx: Context, device: torch.device) -> list[int]:
    """The element-wise largest of every rank's `values`, on every rank (decisions all ranks take
    together; a least is the negated largest of the negated values)."""
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def broadcast_object(obj, ctx: Context):
    """Rank 0's `obj` on every rank (a run directory name, for instance)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
