"""kubemaker_runtime.processors: CPUs (affinity and cgroup quota), GPUs, SM_NUM_*.

A test cannot create a cgroup, nor a GPU: the cgroup files and the /dev entries are
written under tmp_path, laid out as the kernel and the container runtime lay them out,
and each function reads the directory it is given. The affinity is this process's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubemaker_runtime import processors

AFFINITY = len(os.sched_getaffinity(0))


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- CPUs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpu_max", "limit", "cpus"),
    [
        ("150000 100000\n", 1.5, min(2, AFFINITY)),  # rounded up
        ("200000 100000\n", 2.0, min(2, AFFINITY)),
        ("50000 100000\n", 0.5, 1),  # at least 1
        ("max 100000\n", None, AFFINITY),  # no CPU limit
        ("100000000 100000\n", 1000.0, AFFINITY),  # never more than the affinity
        ("lots 100000\n", None, AFFINITY),  # malformed: no quota
    ],
)
def test_cgroup_v2_quota_caps_the_affinity(
    tmp_path: Path, cpu_max: str, limit: float | None, cpus: int
) -> None:
    write(tmp_path / "cpu.max", cpu_max)
    assert processors.cgroup_cpu_limit(tmp_path) == limit
    assert processors.available_cpus(tmp_path) == cpus


@pytest.mark.parametrize("controller", ["cpu", "cpu,cpuacct"])
@pytest.mark.parametrize(
    ("quota", "limit", "cpus"),
    [("250000", 2.5, min(3, AFFINITY)), ("-1", None, AFFINITY), ("10000", 0.1, 1)],
)
def test_cgroup_v1_quota_caps_the_affinity(
    tmp_path: Path, controller: str, quota: str, limit: float | None, cpus: int
) -> None:
    write(tmp_path / controller / "cpu.cfs_quota_us", f"{quota}\n")
    write(tmp_path / controller / "cpu.cfs_period_us", "100000\n")
    assert processors.cgroup_cpu_limit(tmp_path) == limit
    assert processors.available_cpus(tmp_path) == cpus


def test_cgroup_v2_wins_over_v1(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "100000 100000\n")
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", "400000\n")
    write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert processors.cgroup_cpu_limit(tmp_path) == 1.0


def test_no_cgroup_files_mean_no_quota(tmp_path: Path) -> None:
    assert processors.cgroup_cpu_limit(tmp_path / "missing") is None
    assert processors.available_cpus(tmp_path / "missing") == AFFINITY


def test_this_machine_has_at_least_one_cpu() -> None:
    assert 1 <= processors.available_cpus() <= AFFINITY


# --- GPUs -------------------------------------------------------------------------------


@pytest.fixture
def dev_with_two_gpus(tmp_path: Path) -> Path:
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-caps", "null"):
        (tmp_path / name).touch()
    return tmp_path


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, 2),  # the device nodes the runtime mounted
        ({"NVIDIA_VISIBLE_DEVICES": "all"}, 2),
        ({"NVIDIA_VISIBLE_DEVICES": "GPU-1a2b,GPU-3c4d,GPU-5e6f"}, 3),  # the device plugin's
        ({"NVIDIA_VISIBLE_DEVICES": "void"}, 0),
        ({"NVIDIA_VISIBLE_DEVICES": "none"}, 0),
        ({"NVIDIA_VISIBLE_DEVICES": ""}, 0),
        ({"CUDA_VISIBLE_DEVICES": "1"}, 1),
        ({"CUDA_VISIBLE_DEVICES": "0,1", "NVIDIA_VISIBLE_DEVICES": "none"}, 2),  # CUDA wins
        ({"CUDA_VISIBLE_DEVICES": ""}, 0),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, 0),
        # CUDA stops at the first invalid entry: a negative index, an index past the
        # last device, a repeat, something that is neither an index nor a UUID.
        ({"CUDA_VISIBLE_DEVICES": "0,-1,1"}, 1),
        ({"CUDA_VISIBLE_DEVICES": "1,5,0"}, 1),
        ({"CUDA_VISIBLE_DEVICES": "0,0"}, 1),
        ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, 0),
        ({"CUDA_VISIBLE_DEVICES": " 1 , 0 "}, 2),
        ({"CUDA_VISIBLE_DEVICES": "GPU-8f1e3b2a-0000-0000-0000-000000000000"}, 1),
        ({"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b,GPU-c"}, 2),  # never more than the devices
    ],
)
def test_available_gpus(environ: dict[str, str], expected: int, dev_with_two_gpus: Path) -> None:
    assert processors.available_gpus(environ, dev_with_two_gpus) == expected


def test_a_machine_without_gpu_devices_has_none(tmp_path: Path) -> None:
    assert processors.available_gpus({}, tmp_path) == 0
    assert processors.available_gpus({}, tmp_path / "missing") == 0
    # A shell that sets CUDA_VISIBLE_DEVICES does not make a GPU (local mode's --gpus).
    assert processors.available_gpus({"CUDA_VISIBLE_DEVICES": "0"}, tmp_path) == 0


def test_a_gpu_that_is_not_the_first_counts(tmp_path: Path) -> None:
    # The runtime mounts a GPU under its host minor number: a pod given GPU 3 has nvidia3.
    (tmp_path / "nvidia3").touch()
    assert processors.available_gpus({}, tmp_path) == 1
    assert processors.available_gpus({"CUDA_VISIBLE_DEVICES": "0"}, tmp_path) == 1


# --- what an algorithm uses --------------------------------------------------------------


def test_algorithm_cpus_follow_sm_num_cpus(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "max 100000\n")  # a pod without a CPU limit
    # The operator's count (the pod's CPU request) wins over what the container sees.
    assert processors.algorithm_cpus({"SM_NUM_CPUS": "1"}, tmp_path) == 1
    assert processors.algorithm_cpus({"SM_NUM_CPUS": "64"}, tmp_path) == 64
    assert processors.algorithm_cpus({}, tmp_path) == AFFINITY
    assert processors.algorithm_cpus({"SM_NUM_CPUS": ""}, tmp_path) == AFFINITY
    write(tmp_path / "cpu.max", "100000 100000\n")
    assert processors.algorithm_cpus({}, tmp_path) == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [("two", "SM_NUM_CPUS='two' is not a whole number"), ("0", "SM_NUM_CPUS='0' must be")],
)
def test_a_malformed_sm_num_cpus_is_named(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        processors.algorithm_cpus({"SM_NUM_CPUS": value}, tmp_path)


def test_algorithm_gpus_follow_sm_num_gpus_up_to_the_visible(dev_with_two_gpus: Path) -> None:
    assert processors.algorithm_gpus({"SM_NUM_GPUS": "1"}, dev_with_two_gpus) == 1
    assert processors.algorithm_gpus({"SM_NUM_GPUS": "0"}, dev_with_two_gpus) == 0
    assert processors.algorithm_gpus({"SM_NUM_GPUS": "8"}, dev_with_two_gpus) == 2
    assert processors.algorithm_gpus({}, dev_with_two_gpus) == 2
    assert processors.algorithm_gpus({"SM_NUM_GPUS": "1"}, dev_with_two_gpus / "none") == 0
    with pytest.raises(ValueError, match="SM_NUM_GPUS='-1' must be at least 0"):
        processors.algorithm_gpus({"SM_NUM_GPUS": "-1"}, dev_with_two_gpus)


def test_importing_needs_only_the_standard_library() -> None:
    # The operator imports this module, and so does every image.
    code = (
        "import sys; before = set(sys.modules)\n"
        "import kubemaker_runtime.processors\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(sorted(new - set(sys.stdlib_module_names) - {'kubemaker_runtime'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert done.stdout.strip() == "[]"
