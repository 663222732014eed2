"""Where a training stage runs, one flag for every stage: `--device auto|cpu|cuda`, and the process group under
torchrun.

auto is a GPU when one is visible, else the CPU. Under torchrun each process takes the GPU of its LOCAL_RANK and
the process group uses NCCL; on the CPU it uses gloo. A stage builds or loads its model on the CPU, moves it with
`.to(device)` before its optimiser is built and DDP/FSDP wraps it, and moves each batch to the same device.
Components are written from CPU copies (`save_component`); a train state is loaded onto the CPU
(`load_train_state`) and the optimiser moves its state to its parameters' device, so a run resumes on another
device.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

CHOICES = ("auto", "cpu", "cuda")


def resolve_device(flag: str, local_rank: int = 0) -> torch.device:
    """`--device` -> the device this process trains on (a GPU: the LOCAL_RANK-th)."""
    if flag not in CHOICES:
        raise ValueError(f"device must be one of {CHOICES}, got {flag!r}")
    if flag == "cpu" or (flag == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no GPU (torch.cuda.is_available() is False); use --device cpu")
    if local_rank >= torch.cuda.device_count():
        raise ValueError(f"process LOCAL_RANK {local_rank}, but only {torch.cuda.device_count()} GPUs are visible")
    return torch.device("cuda", local_rank)


def setup(flag: str) -> tuple[int, int, torch.device]:
    """(world size, rank, device) for this process: under torchrun (WORLD_SIZE > 1) the process group is started
    (NCCL on GPUs, gloo on the CPU) and a GPU process is bound to its GPU; alone, (1, 0, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(flag, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, (dist.get_rank() if world > 1 else 0), device
