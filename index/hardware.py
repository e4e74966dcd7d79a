"""What accelerators this process can use, and which profile (cpu/gpu) that implies.

Importing this module is cheap: torch is imported only inside `detect_hardware()`, and only
when torch is installed and the machine has a GPU driver at all, so a CPU-only
`tvrec query` never pays torch's import time.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tvrec.pipelines.errors import ConfigError

Profile = Literal["cpu", "gpu"]
DeviceSetting = Literal["auto", "cpu", "gpu"]

# Device nodes that exist whenever a CUDA-capable driver is loaded (NVIDIA on Linux,
# NVIDIA under WSL2, ROCm builds of torch that answer through torch.cuda).
_GPU_DRIVER_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/kfd")


@dataclass(frozen=True)
class Hardware:
    """Accelerators seen by the two libraries that can use them."""

    has_cuda_torch: bool
    faiss_gpus: int
    device_name: str | None = None
    cpu_count: int = 1

    @property
    def sees_cuda(self) -> bool:
        return self.has_cuda_torch or self.faiss_gpus > 0


@functools.lru_cache(maxsize=1)
def detect_hardware() -> Hardware:
    """Probe faiss and (lazily) torch once per process; the answer is cached."""
    has_cuda, device_name = _probe_torch_cuda()
    return Hardware(
        has_cuda_torch=has_cuda,
        faiss_gpus=_probe_faiss_gpus(),
        device_name=device_name,
        cpu_count=_cpu_count(),
    )


def pick_profile(setting: DeviceSetting, hw: Hardware) -> Profile:
    """`auto` -> gpu iff CUDA is seen (by faiss or torch); `cpu`/`gpu` force a profile."""
    if setting == "cpu":
        return "cpu"
    if setting == "gpu":
        if not hw.sees_cuda:
            raise ConfigError(
                "device 'gpu' was asked for but neither faiss nor torch sees a CUDA device; "
                "use device 'auto' or 'cpu' on this machine"
            )
        return "gpu"
    if setting == "auto":
        return "gpu" if hw.sees_cuda else "cpu"
    raise ConfigError(f"device must be one of 'auto', 'cpu', 'gpu', not {setting!r}")


def _probe_torch_cuda() -> tuple[bool, str | None]:
    """(torch sees CUDA, name of device 0); never raises, imports torch only if useful."""
    if importlib.util.find_spec("torch") is None or not _gpu_driver_present():
        return False, None
    try:
        import torch

        if not torch.cuda.is_available():
            return False, None
        return True, str(torch.cuda.get_device_name(0))
    except Exception:  # a broken CUDA install means "no CUDA", not a crash
        return False, None


def _probe_faiss_gpus() -> int:
    """Number of GPUs faiss can use: 0 for faiss-cpu builds (no get_num_gpus or it says 0)."""
    import faiss

    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    if get_num_gpus is None:
        return 0
    try:
        return int(get_num_gpus())
    except Exception:
        return 0


def _gpu_driver_present() -> bool:
    """False only where a GPU is certainly absent (Linux without driver nodes)."""
    if not sys.platform.startswith("linux"):
        return True  # no cheap check elsewhere: let torch answer
    return any(Path(node).exists() for node in _GPU_DRIVER_NODES)


def _cpu_count() -> int:
    """CPUs this process may run on (respects taskset / container CPU sets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
