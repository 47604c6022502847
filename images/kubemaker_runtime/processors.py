"""The CPUs and GPUs this container may use, and the ``SM_NUM_*`` that tell an algorithm.

One answer for every part of kubemaker that sizes work to the machine: the model
server's worker count, the agent's and local mode's ``SM_NUM_CPUS`` / ``SM_NUM_GPUS``,
the built-in XGBoost's thread count and device, the MXNet framework's environment, and
whether local mode gives a container ``--gpus``.

- :func:`available_cpus`: the CPUs this process may run on (its affinity), capped by
  the cgroup's CPU quota (what a pod's CPU limit becomes); ``os.cpu_count()`` counts
  the node's cores, and a pod limited to 2 CPUs on a 64-core node must not start 64
  workers or threads.
- :func:`available_gpus`: the NVIDIA GPUs this process may use, from the device nodes
  the container runtime mounted and ``NVIDIA_VISIBLE_DEVICES`` / ``CUDA_VISIBLE_DEVICES``.
- :func:`algorithm_cpus` / :func:`algorithm_gpus`: what an algorithm uses: the
  ``SM_NUM_CPUS`` / ``SM_NUM_GPUS`` it was given when set (the operator sets them from
  the pod's resources), else what this container sees; so the thread count an algorithm
  runs with and the number its user's code reads never disagree.

Standard library only, nothing read at import: the operator imports this module (for
local mode), and every function takes the directory it reads, so tests give them a
directory tree of their own.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
DEV_DIR = Path("/dev")
# What sagemaker-training-toolkit names the counts (see contract.build_training_env).
NUM_CPUS_ENV = "SM_NUM_CPUS"
NUM_GPUS_ENV = "SM_NUM_GPUS"
CUDA_VISIBLE_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"
NVIDIA_VISIBLE_DEVICES_ENV = "NVIDIA_VISIBLE_DEVICES"

# One node per GPU (/dev/nvidia0, /dev/nvidia3, ...); nvidiactl, nvidia-uvm are not GPUs.
_GPU_DEVICE = re.compile(r"nvidia\d+")
# What CUDA accepts in CUDA_VISIBLE_DEVICES: an index, or a GPU's or MIG instance's UUID.
_CUDA_INDEX = re.compile(r"\d+")
_CUDA_UUID = re.compile(r"(GPU|MIG)-\S+")
# cgroup v1 mounts the cpu controller under one of these (one is often a link to the other).
_CGROUP_V1_CPU_DIRS = ("cpu", "cpu,cpuacct")


# --- CPUs -------------------------------------------------------------------------------


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs this process may use: its affinity, capped by the cgroup's CPU quota
    rounded up (1.5 CPUs -> 2), at least 1."""
    count = _affinity()
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return count


def cgroup_cpu_limit(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup's quota allows per period (``1.5``), or None when it sets none.

    cgroup v2: ``<root>/cpu.max`` (``"max 100000"`` or ``"150000 100000"``); cgroup v1:
    ``<root>/cpu/cpu.cfs_quota_us`` (-1 when unlimited) over ``cpu.cfs_period_us``. In a
    container the root is the container's own cgroup, where Kubernetes puts its CPU limit.
    An unreadable or malformed file counts as no quota.
    """
    fields = _read(cgroup_root / "cpu.max").split()
    if len(fields) == 2:
        quota, period = fields
        return None if quota == "max" else _ratio(quota, period)
    for name in _CGROUP_V1_CPU_DIRS:
        directory = cgroup_root / name
        quota = _read(directory / "cpu.cfs_quota_us")
        if quota:
            return _ratio(quota, _read(directory / "cpu.cfs_period_us"))
    return None


def _affinity() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


# --- GPUs -------------------------------------------------------------------------------


def available_gpus(environ: Mapping[str, str] | None = None, dev_dir: Path = DEV_DIR) -> int:
    """NVIDIA GPUs this process may use.

    The device nodes (``/dev/nvidiaN``) are the GPUs the container runtime gave this
    container (on a machine without one, the machine's). Then:

    - ``CUDA_VISIBLE_DEVICES``, when set, chooses among them as CUDA does: indices or
      ``GPU-``/``MIG-`` UUIDs, up to the first invalid entry (``-1``, an index past the
      last device); empty hides them all. It wins over ``NVIDIA_VISIBLE_DEVICES``.
    - ``NVIDIA_VISIBLE_DEVICES``, as the NVIDIA container runtime and the Kubernetes
      device plugin set it: ``none``, ``void`` or empty hide them all, ``all`` means every
      device node, a list names the GPUs given (one each, even if their nodes are not
      visible here).
    """
    env = os.environ if environ is None else environ
    devices = _gpu_devices(dev_dir)
    cuda = env.get(CUDA_VISIBLE_DEVICES_ENV)
    if cuda is not None:
        return _cuda_visible(cuda, devices)
    nvidia = env.get(NVIDIA_VISIBLE_DEVICES_ENV)
    if nvidia is not None:
        value = nvidia.strip()
        if value.lower() in ("", "none", "void"):
            return 0
        if value.lower() != "all":
            return len([part for part in value.split(",") if part.strip()])
    return devices


def _gpu_devices(dev_dir: Path) -> int:
    try:
        return sum(1 for name in os.listdir(dev_dir) if _GPU_DEVICE.fullmatch(name))
    except OSError:
        return 0


def _cuda_visible(value: str, devices: int) -> int:
    chosen: list[str] = []
    for part in (p.strip() for p in value.split(",")):
        if _CUDA_INDEX.fullmatch(part):
            valid = int(part) < devices
        else:
            valid = bool(_CUDA_UUID.fullmatch(part))
        if not valid or part in chosen:
            break
        chosen.append(part)
    return min(len(chosen), devices)


# --- what an algorithm uses --------------------------------------------------------------


def algorithm_cpus(
    environ: Mapping[str, str] | None = None, cgroup_root: Path = CGROUP_ROOT
) -> int:
    """``SM_NUM_CPUS`` when set (the operator sets it from the pod's CPU request, which a
    pod without a CPU limit may exceed), else :func:`available_cpus`. A malformed value
    is a ValueError naming it."""
    env = os.environ if environ is None else environ
    declared = _declared(env, NUM_CPUS_ENV, minimum=1)
    return available_cpus(cgroup_root) if declared is None else declared


def algorithm_gpus(environ: Mapping[str, str] | None = None, dev_dir: Path = DEV_DIR) -> int:
    """``SM_NUM_GPUS`` when set, never more than :func:`available_gpus` (a thread too
    many only shares a CPU; a GPU that is not there fails the run); else
    :func:`available_gpus`. A malformed value is a ValueError naming it."""
    env = os.environ if environ is None else environ
    visible = available_gpus(env, dev_dir)
    declared = _declared(env, NUM_GPUS_ENV, minimum=0)
    return visible if declared is None else min(declared, visible)


def _declared(env: Mapping[str, str], name: str, *, minimum: int) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} must be at least {minimum}")
    return value
