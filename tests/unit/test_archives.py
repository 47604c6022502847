"""Unpacking user tarballs: the same refusals with and without Python's data filter."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kubemaker_runtime.archives import extract_all

REPO = Path(__file__).resolve().parents[2]


def tarball(path: Path, *members: tuple[str, bytes | None, str | None]) -> Path:
    """(name, data, symlink target): data for a file, a target for a symlink."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                info.mode = 0o4777  # setuid and world-writable: must not survive
                tar.addfile(info, io.BytesIO(data or b""))
    return path


BAD = {
    "outside": [("../evil.txt", b"x", None)],
    "absolute link": [("model/passwd", None, "/etc/passwd")],
    "link out": [("model/escape", None, "../../etc/passwd")],
}


@pytest.fixture(params=["data filter", "by hand"])
def extract(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "by hand":
        # A Python without PEP 706's filters (Debian 12's 3.11.2): the hand-made checks.
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return str(request.param)


def test_a_good_archive_is_extracted(tmp_path: Path, extract: str) -> None:
    archive = tarball(tmp_path / "m.tar.gz", ("model/xgboost-model", b"trees", None))
    with tarfile.open(archive) as tar:
        extract_all(tar, tmp_path / "out")
    unpacked = tmp_path / "out" / "model" / "xgboost-model"
    assert unpacked.read_bytes() == b"trees"
    assert unpacked.stat().st_mode & 0o7022 == 0  # no setuid, no group/other write


@pytest.mark.parametrize("case", sorted(BAD))
def test_members_escaping_the_destination_are_refused(
    tmp_path: Path, extract: str, case: str
) -> None:
    archive = tarball(tmp_path / "bad.tar.gz", ("model/ok", b"ok", None), *BAD[case])
    with tarfile.open(archive) as tar, pytest.raises(tarfile.TarError):
        extract_all(tar, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_a_leading_slash_is_dropped(tmp_path: Path, extract: str) -> None:
    archive = tarball(tmp_path / "abs.tar.gz", ("/kubemaker-test-abs/evil.txt", b"x", None))
    with tarfile.open(archive) as tar:
        extract_all(tar, tmp_path / "out")
    assert (tmp_path / "out" / "kubemaker-test-abs" / "evil.txt").read_bytes() == b"x"
    assert not Path("/kubemaker-test-abs").exists()


@pytest.mark.skipif(
    not Path("/usr/bin/python3").exists() or shutil.which("dpkg") is None,
    reason="needs Debian's own python3 (a Python without tarfile.data_filter)",
)
def test_debians_python_refuses_an_escaping_member(tmp_path: Path) -> None:
    """The real Python of the images' Debian base, not a monkeypatched one."""
    archive = tarball(tmp_path / "bad.tar.gz", ("../evil.txt", b"x", None))
    script = (
        "import sys, tarfile; from pathlib import Path; "
        "from kubemaker_runtime.archives import extract_all; "
        "print('has-filter' if hasattr(tarfile, 'data_filter') else 'no-filter'); "
        f"tar = tarfile.open({str(archive)!r})\n"
        "try:\n"
        f"    extract_all(tar, Path({str(tmp_path / 'out')!r}))\n"
        "except tarfile.TarError as exc:\n"
        "    print('refused:', exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "images")}
    done = subprocess.run(
        ["/usr/bin/python3", "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout, done.stdout
    assert not (tmp_path / "evil.txt").exists()
    print(done.stdout.splitlines()[0], file=sys.stderr)
