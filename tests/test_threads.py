"""The thread policy: cores from affinity, cgroup quota and OMP_NUM_THREADS; one thread unless
asked; never more than cores // workers; torch and the children's environment set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autobalance import threads
from autobalance.errors import ConfigError
from autobalance.threads import (
    ThreadCounts,
    apply_threads,
    available_cores,
    cgroup_cpu_limit,
    choose_threads,
    using_threads,
)

SRC = Path(__file__).resolve().parents[1] / "src"


def _cgroup(tmp_path: Path, files: dict[str, str], own: str = "0::/\n") -> tuple[Path, Path]:
    """A fake ``/sys/fs/cgroup`` tree with ``files`` and a fake ``/proc/self/cgroup``."""
    root = tmp_path / "cgroup"
    root.mkdir()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    self_cgroup = tmp_path / "self_cgroup"
    self_cgroup.write_text(own)
    return root, self_cgroup


@pytest.fixture
def eight_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)


# --- cgroup quota ---------------------------------------------------------------------------


def test_cgroup_v2_quota_is_quota_over_period(tmp_path: Path) -> None:
    root, own = _cgroup(tmp_path, {"cpu.max": "150000 100000\n"})
    assert cgroup_cpu_limit(root, own) == 1.5


def test_cgroup_v2_max_means_no_limit(tmp_path: Path) -> None:
    root, own = _cgroup(tmp_path, {"cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(root, own) is None


def test_cgroup_v2_the_smallest_quota_on_the_way_up_binds(tmp_path: Path) -> None:
    files = {
        "cpu.max": "max 100000",
        "jobs/cpu.max": "300000 100000",
        "jobs/mine/cpu.max": "max 100000",
        "other/cpu.max": "50000 100000",  # a sibling's quota does not apply
    }
    root, own = _cgroup(tmp_path, files, own="0::/jobs/mine\n")
    assert cgroup_cpu_limit(root, own) == 3.0


def test_cgroup_v2_a_host_path_missing_in_a_container_reads_the_mount(tmp_path: Path) -> None:
    root, own = _cgroup(tmp_path, {"cpu.max": "200000 100000"}, own="0::/docker/0123abcd\n")
    assert cgroup_cpu_limit(root, own) == 2.0


@pytest.mark.parametrize("mount", ["cpu", "cpu,cpuacct"])
def test_cgroup_v1_cfs_quota(tmp_path: Path, mount: str) -> None:
    files = {f"{mount}/cpu.cfs_quota_us": "250000\n", f"{mount}/cpu.cfs_period_us": "100000\n"}
    root, own = _cgroup(tmp_path, files, own="2:cpuacct:/\n1:cpu:/\n0::/\n")
    assert cgroup_cpu_limit(root, own) == 2.5


def test_cgroup_v1_quota_minus_one_means_no_limit(tmp_path: Path) -> None:
    files = {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}
    root, own = _cgroup(tmp_path, files, own="1:cpu:/\n")
    assert cgroup_cpu_limit(root, own) is None


def test_cgroup_v1_nested_group(tmp_path: Path) -> None:
    files = {
        "cpu,cpuacct/cpu.cfs_quota_us": "-1",
        "cpu,cpuacct/cpu.cfs_period_us": "100000",
        "cpu,cpuacct/box/cpu.cfs_quota_us": "100000",
        "cpu,cpuacct/box/cpu.cfs_period_us": "100000",
    }
    root, own = _cgroup(tmp_path, files, own="4:cpu,cpuacct:/box\n")
    assert cgroup_cpu_limit(root, own) == 1.0


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"cpu.max": ""},
        {"cpu.max": "lots 100000"},
        {"cpu.max": "100000 0"},
        {"cpu/cpu.cfs_quota_us": "abc", "cpu/cpu.cfs_period_us": "100000"},
        {"cpu/cpu.cfs_quota_us": "100000"},  # no period
    ],
)
def test_missing_or_garbled_cgroup_files_mean_no_limit(tmp_path: Path, files: dict) -> None:
    root, own = _cgroup(tmp_path, files, own="1:cpu:/\n0::/\n")
    assert cgroup_cpu_limit(root, own) is None


def test_no_proc_self_cgroup_reads_the_mount_roots(tmp_path: Path) -> None:
    root, _ = _cgroup(tmp_path, {"cpu.max": "100000 100000"})
    assert cgroup_cpu_limit(root, tmp_path / "missing") == 1.0


# --- available cores ------------------------------------------------------------------------


@pytest.mark.usefixtures("eight_cpus")
def test_available_cores_is_the_affinity_without_limits(tmp_path: Path) -> None:
    root, own = _cgroup(tmp_path, {})
    assert available_cores(environ={}, cgroup_root=root, self_cgroup=own) == 8


def test_available_cores_counts_the_affinity_mask_not_the_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {3, 5}, raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 64)
    root, own = _cgroup(tmp_path, {})
    assert available_cores(environ={}, cgroup_root=root, self_cgroup=own) == 2


def test_available_cores_without_an_affinity_api_uses_cpu_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(threads.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 5)
    root, own = _cgroup(tmp_path, {})
    assert available_cores(environ={}, cgroup_root=root, self_cgroup=own) == 5


@pytest.mark.usefixtures("eight_cpus")
@pytest.mark.parametrize(
    ("quota", "cores"), [("150000 100000", 1), ("250000 100000", 2), ("50000 100000", 1)]
)
def test_available_cores_rounds_the_quota_down_to_at_least_one(
    tmp_path: Path, quota: str, cores: int
) -> None:
    root, own = _cgroup(tmp_path, {"cpu.max": quota})
    assert available_cores(environ={}, cgroup_root=root, self_cgroup=own) == cores


@pytest.mark.usefixtures("eight_cpus")
@pytest.mark.parametrize(
    ("omp", "cores"), [("2", 2), (" 3 ", 3), ("4,2", 4), ("16", 8), ("0", 8), ("x", 8), ("", 8)]
)
def test_available_cores_respects_a_set_omp_num_threads(
    tmp_path: Path, omp: str, cores: int
) -> None:
    root, own = _cgroup(tmp_path, {})
    environ = {"OMP_NUM_THREADS": omp}
    assert available_cores(environ=environ, cgroup_root=root, self_cgroup=own) == cores


@pytest.mark.usefixtures("eight_cpus")
def test_available_cores_takes_the_smallest_of_all_three(tmp_path: Path) -> None:
    root, own = _cgroup(tmp_path, {"cpu.max": "600000 100000"})
    kwargs = {"cgroup_root": root, "self_cgroup": own}
    assert available_cores(environ={"OMP_NUM_THREADS": "7"}, **kwargs) == 6
    assert available_cores(environ={"OMP_NUM_THREADS": "3"}, **kwargs) == 3


def test_available_cores_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert available_cores() == 1


# --- choosing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2, 64])
def test_the_default_is_one_thread(workers: int) -> None:
    assert choose_threads(None, workers, cores=64) == 1


@pytest.mark.parametrize(
    ("requested", "workers", "cores", "chosen"),
    [(4, 1, 8, 4), (8, 2, 8, 4), (16, 1, 8, 8), (2, 3, 8, 2), (3, 4, 2, 1), (1, 1, 1, 1)],
)
def test_choose_threads_caps_at_cores_per_worker(
    requested: int, workers: int, cores: int, chosen: int
) -> None:
    assert choose_threads(requested, workers, cores=cores) == chosen


def test_choose_threads_asks_available_cores_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    assert choose_threads(8) == 2
    assert choose_threads(8, workers=2) == 1


@given(
    requested=st.integers(1, 256),
    workers=st.integers(1, 64),
    cores=st.integers(1, 256),
)
def test_choose_threads_never_oversubscribes(requested: int, workers: int, cores: int) -> None:
    chosen = choose_threads(requested, workers, cores=cores)
    assert 1 <= chosen <= requested
    assert chosen <= max(1, cores // workers)
    if workers <= cores:
        assert chosen * workers <= cores
        assert chosen == min(requested, cores // workers)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_named(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"number of threads must be a positive integer, got"):
        choose_threads(bad, cores=4)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"number of threads must be a positive integer"):
        apply_threads(bad, environ={})  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -2, 2.0, False, None])
def test_bad_worker_counts_are_named(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"number of workers must be a positive integer, got"):
        choose_threads(2, bad, cores=4)  # type: ignore[arg-type]


def test_bad_core_counts_are_named() -> None:
    with pytest.raises(ConfigError, match=r"number of cores must be a positive integer, got 0"):
        choose_threads(2, cores=0)


# --- applying ---------------------------------------------------------------------------------


def test_apply_threads_sets_torch_and_the_childrens_environment() -> None:
    before = torch.get_num_threads()
    environ: dict[str, str] = {"OMP_NUM_THREADS": "8", "OTHER": "x"}
    try:
        counts = apply_threads(2, environ=environ)
        assert torch.get_num_threads() == 2
        assert counts == ThreadCounts(2, torch.get_num_interop_threads())
        assert environ == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OTHER": "x"}
    finally:
        torch.set_num_threads(before)


def test_apply_threads_writes_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "9")  # restored after the test
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        apply_threads(1)
        assert (os.environ["OMP_NUM_THREADS"], os.environ["MKL_NUM_THREADS"]) == ("1", "1")
    finally:
        torch.set_num_threads(before)


def test_apply_threads_sets_inter_op_threads_once_and_then_leaves_them() -> None:
    """In a fresh process: the first call sets the inter-op pool, a later one cannot and
    does not fail; a child started afterwards inherits the thread count."""
    code = (
        "import os, subprocess, sys\n"
        "from autobalance.threads import apply_threads\n"
        "print(apply_threads(3))\n"
        "print(apply_threads(2))\n"
        "child = 'import torch; print(torch.get_num_threads())'\n"
        "print(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True,"
        " check=True).stdout.strip())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in threads.THREAD_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == [
        "ThreadCounts(intra_op=3, inter_op=3)",
        "ThreadCounts(intra_op=2, inter_op=3)",
        "2",
    ]


def test_using_threads_puts_the_callers_settings_back() -> None:
    before = torch.get_num_threads()
    environ: dict[str, str] = {"OMP_NUM_THREADS": "7", "OTHER": "x"}
    try:
        torch.set_num_threads(2)
        with using_threads(3, environ=environ) as counts:
            assert torch.get_num_threads() == 3 and counts.intra_op == 3
            assert environ == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "OTHER": "x"}
        assert torch.get_num_threads() == 2
        assert environ == {"OMP_NUM_THREADS": "7", "OTHER": "x"}  # MKL was unset: unset again
        with pytest.raises(KeyError), using_threads(1, environ=environ):
            raise KeyError("a failing run")
        assert torch.get_num_threads() == 2 and environ == {"OMP_NUM_THREADS": "7", "OTHER": "x"}
        with (
            pytest.raises(ConfigError, match="number of threads"),
            using_threads(0, environ=environ),
        ):
            pass
        assert torch.get_num_threads() == 2 and environ == {"OMP_NUM_THREADS": "7", "OTHER": "x"}
    finally:
        torch.set_num_threads(before)
