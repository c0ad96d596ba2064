"""One GPU per parallel sweep worker.

Hydra's joblib launcher runs a sweep's jobs in worker processes on this machine. A job
asking Lightning for one GPU would get GPU 0 in every worker. Instead each worker claims
one GPU for its whole life, by locking a slot file in the sweep's folder, and makes it
the only GPU the process sees before CUDA starts there; the jobs it runs next keep it.
The lock goes with the process, so a crashed worker frees its GPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

__all__ = ["claim_slot", "pin_worker_gpu"]

_claimed: tuple[int, IO[str]] | None = None  # this process's slot and its open lock file


def claim_slot(folder: Path, count: int) -> int | None:
    """The first of ``count`` slots no other live process holds (kept by this process
    from then on), or None when all are taken."""
    import fcntl

    global _claimed
    if _claimed is not None:
        return _claimed[0]
    folder.mkdir(parents=True, exist_ok=True)
    for slot in range(count):
        handle = (folder / f"slot-{slot}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _claimed = (slot, handle)
        return slot
    return None


def pin_worker_gpu(trainer: dict, launcher: str, folder: Path) -> str | None:
    """For a one-GPU job in a joblib worker on a machine with several GPUs: claim a GPU
    and set ``CUDA_VISIBLE_DEVICES`` to it. Returns the device id set, else None."""
    if "joblib" not in launcher.lower():
        return None
    if str(trainer.get("accelerator")) not in ("gpu", "cuda", "auto"):
        return None
    if str(trainer.get("devices")) != "1":
        return None  # a DDP job spreads over the GPUs itself
    import torch

    count = torch.cuda.device_count()  # NVML: does not start CUDA in this process
    if count < 2:
        return None
    slot = claim_slot(folder, count)
    if slot is None:
        from rich.console import Console

        Console(stderr=True).print(
            f"[yellow]warning[/]: more parallel jobs than GPUs ({count}); this one shares "
            f"GPU 0. Set hydra.launcher.n_jobs={count} for one job per GPU."
        )
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(count)]
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[slot].strip()
    return os.environ["CUDA_VISIBLE_DEVICES"]
