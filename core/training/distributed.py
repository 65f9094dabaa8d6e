"""Training on several processes or machines with PyTorch's own engine (torchrun + DDP).

``torchrun --nproc_per_node=N -m discomkd train ...`` starts N copies of the trainer and sets
RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT for each. :func:`from_environment`
reads them and joins the process group (gloo on CPU, NCCL on CUDA); without them (a plain
``discomkd train``, the app) it returns a single-process context whose every method is a no-op,
so the trainer has one code path.

What the trainer gets from here:

- the data: the cache is decoded by local rank 0 while the others wait (:meth:`leader_first`);
  every rank draws and augments the same batches (same seed) and keeps every ``world_size``-th
  sample of each step's batch of every modality (:meth:`shard`), as DistributedSampler does for
  an epoch. ``--batch-size`` stays the batch per modality per step over all processes, so N
  processes train with the same steps and batches as one;
- the model: wrapped in DistributedDataParallel, which averages the gradients over the ranks in
  backward (the mean loss over the whole batch, for equal parts); BatchNorm layers become
  SyncBatchNorm on CUDA, so they normalise with the whole batch's statistics as one process would;
- control: a stop requested on any rank stops every rank at the same step (:meth:`any_rank`);
  only rank 0 (:attr:`is_writer`) writes the run folder and reports events.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch
from torch import nn

from ..errors import ConfigError

# A rank waits this long for the others (e.g. while local rank 0 decodes a large data set).
COLLECTIVE_TIMEOUT = timedelta(minutes=60)


@dataclass
class DistributedContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None
    device: torch.device | None = None  # where collectives run: cuda:LOCAL_RANK under NCCL, else CPU
    owns_group: bool = False  # True when we initialised the process group (and so must destroy it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """Only rank 0 writes the run folder, logs, checkpoints and the bundle."""
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's part (every world_size-th row) of a batch every rank drew identically (same seed)."""
        return batch[self.rank :: self.world_size] if self.enabled else batch

    def wrap(self, model: nn.Module, batch_size: int) -> nn.Module:
        """The module to call for training steps; ``model`` itself keeps its state dict keys."""
        if not self.enabled:
            return model
        if batch_size % self.world_size or batch_size < 2 * self.world_size:
            raise ConfigError(
                f"The batch size {batch_size} is split over {self.world_size} processes; choose a multiple of "
                f"{self.world_size} (at least {2 * self.world_size}: BatchNorm needs two samples per process)."
            )
        from torch.nn.parallel import DistributedDataParallel

        if self.device.type == "cuda":
            # Per-GPU batches are small; synchronised statistics keep BatchNorm as with one big batch.
            # Converted in place below the top module, so `model` holds the SyncBatchNorm layers too.
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # A conv weight with one input channel has equivalent strides DDP still reports as a mismatch.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        # find_unused_parameters: a loss term left out (e.g. a weight of 0) leaves a head without gradient,
        # which DDP otherwise reports as an error; the price is one graph traversal per step.
        return DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=True,
        )

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on at least one (one small all-reduce)."""
        if not self.enabled:
            return flag
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def broadcast(self, obj):
        """Rank 0's value of a small picklable object, on every rank."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        holder = [obj]
        dist.broadcast_object_list(holder, src=0, device=self.device if self.backend == "nccl" else None)
        return holder[0]

    @contextmanager
    def leader_first(self) -> Iterator[None]:
        """Local rank 0 runs the block first (e.g. decodes and caches the data); the others run it
        after, and read the cache. A failure on the leader still releases the others, which then
        fail the same way with the same message."""
        if not self.enabled:
            yield
            return
        import torch.distributed as dist

        if self.local_rank != 0:
            dist.barrier()
        try:
            yield
        finally:
            if self.local_rank == 0:
                dist.barrier()

    def close(self, wait_for_others: bool = True) -> None:
        """Leave the process group (once the DDP module is gone). After a normal end, wait until every
        rank is here; after a failure, do not (the others may be stuck in a collective, and torchrun
        ends them when this process exits)."""
        if self.owns_group:
            import gc

            import torch.distributed as dist

            # A DDP reducer still alive (held by its parameters' hooks, freed only by the collector) or
            # a rank still in a collective when the group goes would abort the process at exit.
            gc.collect()
            if dist.is_initialized():
                if wait_for_others:
                    dist.barrier()
                dist.destroy_process_group()
            self.owns_group = False


def launched_by_torchrun(environ: os._Environ | dict | None = None) -> bool:
    env = os.environ if environ is None else environ
    return int(env.get("WORLD_SIZE", "1") or 1) > 1 and "RANK" in env


def from_environment(device: torch.device) -> DistributedContext:
    """Join the process group torchrun describes in the environment, or a single-process context."""
    if not launched_by_torchrun():
        return DistributedContext(device=device)
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ["WORLD_SIZE"])
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', '?')} processes on this machine but it has "
                f"{torch.cuda.device_count()} GPU(s). Use --nproc_per_node={torch.cuda.device_count()} or fewer."
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"Training on several processes works on CPU (gloo) or CUDA (NCCL), not on {device.type}. "
                          "Choose --device cpu or cuda.")
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    return DistributedContext(rank, local_rank, world_size, backend, device, owns)
