"""Many processes (torchrun): which rank this process is, which classes it owns, and the few collectives the
loop and the evaluation need. One process is a World of size 1 whose collectives do nothing, so the same code
runs with and without torchrun.

Under `torchrun --nproc_per_node N -m dreamdd ...` (RANK, WORLD_SIZE and LOCAL_RANK in the environment) the
process group is initialised once (gloo for CPU tensors, nccl for CUDA ones). Classes are dealt round-robin
(class c belongs to rank c % N); a rank learns only its classes' images, and every collective below is exact
where it can be (a class's rows come from its one owner) and differs from one process by float rounding only where
it must (the sum of gradient shares of a batch split over ranks).

This module sits low (beside devices.py) rather than in engine/ because the evaluation, below the engine, spreads
its networks over ranks too.
"""
from __future__ import annotations

import atexit
import os
from datetime import timedelta
from typing import Any

import torch
from torch import nn

from . import faults
from .errors import DreamddError

TIMEOUT_MINUTES = float(os.environ.get("DREAMDD_COLLECTIVE_TIMEOUT_MINUTES", "30"))


def _dist():
    import torch.distributed as dist
    return dist


def _collective(name: str, *args: Any, **kwargs: Any) -> None:
    """torch.distributed.`name`(*args); a peer that stopped (its connection closed, or the timeout passed) ends
    in one message rather than a backend traceback."""
    try:
        getattr(_dist(), name)(*args, **kwargs)
    except RuntimeError as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        reason = reason.rsplit("] ", 1)[-1].split(". ")[0][:200]    # gloo: "[file:line] Read error ...: reset. ..."
        raise DreamddError(f"another process of this torchrun stopped or stopped answering ({reason}); rank 0's "
                           "run folder keeps its last checkpoint: continue with dreamdd distill --resume RUN_DIR "
                           "once the cause (see that process's message) is fixed") from None


class World:
    """This process's rank among `size` processes; size 1 (the default) is a plain single process."""

    def __init__(self, rank: int = 0, size: int = 1, local_rank: int = 0):
        self.rank, self.size, self.local_rank = rank, size, local_rank

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run folder, prints and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    # ---- class ownership ---------------------------------------------------------------------------------
    def owner(self, c: int) -> int:
        return c % self.size

    def owned(self, num_classes: int) -> list[int]:
        """The classes this rank learns (round-robin); every rank needs at least one."""
        if self.size > num_classes:
            raise DreamddError(f"{self.size} processes but only {num_classes} classes: every process learns at "
                               f"least one class; run with --nproc_per_node {num_classes} or fewer")
        return list(range(self.rank, num_classes, self.size))

    def share(self, n: int) -> slice:
        """This rank's contiguous share of a batch of n items (the shares of all ranks cover it once, in order)."""
        bounds = [n * r // self.size for r in range(self.size + 1)]
        return slice(bounds[self.rank], bounds[self.rank + 1])

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: on CUDA the GPU numbered LOCAL_RANK, else `device` unchanged."""
        if self.distributed and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    # ---- collectives (no-ops in one process) -----------------------------------------------------------
    def assemble_rows(self, tensor: torch.Tensor, rows_per_class: int) -> torch.Tensor:
        """A copy of `tensor` (rows grouped by class, `rows_per_class` each) whose every class's rows come from
        the rank that owns the class: exact, since each element is its owner's value plus zeros."""
        if not self.distributed:
            return tensor.detach().clone()
        classes = tensor.shape[0] // rows_per_class
        mine = torch.tensor([self.owner(c) == self.rank for c in range(classes)], device=tensor.device)
        mine = mine.repeat_interleave(rows_per_class).view(-1, *([1] * (tensor.dim() - 1)))
        out = torch.where(mine, tensor.detach(), torch.zeros((), dtype=tensor.dtype, device=tensor.device))
        _collective("all_reduce", out)
        return out

    def sum_gradients(self, net: nn.Module) -> None:
        """Sum every parameter's gradient over ranks (a missing gradient counts as zeros), in one all-reduce."""
        if not self.distributed:
            return
        params = [p for p in net.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        _collective("all_reduce", flat)
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
            offset += p.numel()

    def weighted_mean(self, value: float, weight: float) -> float:
        """The mean of every rank's `value` weighted by its `weight` (e.g. a loss averaged over its classes)."""
        if not self.distributed:
            return value
        pair = torch.tensor([value * weight, weight], dtype=torch.float64)
        _collective("all_reduce", pair)
        return float(pair[0] / pair[1])

    def decide(self, flag: bool) -> bool:
        """Rank 0's `flag`, on every rank (a decision taken on one clock, e.g. stopping on a time budget)."""
        return bool(self.broadcast(flag)) if self.distributed else flag

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (picklable), in rank order, on every rank."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.size
        _collective("all_gather_object", out, value)
        return out

    def broadcast(self, value: Any = None) -> Any:
        """Rank 0's `value` (picklable) on every rank."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        _collective("broadcast_object_list", box, src=0)
        return box[0]

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size})"


SINGLE = World()
_current: World | None = None


def _environment_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise DreamddError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; launch with torchrun") from None


def current_world() -> World:
    """This process's World: under torchrun (WORLD_SIZE > 1) the process group is joined on the first call."""
    global _current
    if _current is not None:
        return _current
    size = _environment_size()
    if size <= 1:
        _current = SINGLE
        return _current
    dist = _dist()
    if not dist.is_available():
        raise DreamddError("this PyTorch build has no torch.distributed; run in one process (without torchrun)")
    if not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=TIMEOUT_MINUTES))
        atexit.register(_leave)
    _current = World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return _current


def finish() -> bool:
    """End this process's part in a torchrun cleanly: wait at a barrier for every rank to finish its work, then
    leave the process group; whether there was a group to leave. Without the barrier a rank that finished first
    (ranks other than 0 do not write the run folder) tears its connections down while its peers still use theirs,
    and gloo then ends a process with SIGABRT now and then. For a command that succeeded only: a rank that stopped
    on an error leaves at once (_leave, at exit), so that its peers' collectives fail fast instead of waiting at a
    barrier it never meets."""
    dist = _dist()
    if _current is None or not _current.distributed or not dist.is_initialized():
        return False
    try:
        dist.barrier()
    except RuntimeError:    # a peer stopped: nothing left to wait for
        pass
    faults.reached(f"process-group:left@rank{_current.rank}")
    dist.destroy_process_group()
    return True


def _leave() -> None:
    """Leave the process group at exit if finish() did not (PyTorch warns when a process ends inside one)."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
