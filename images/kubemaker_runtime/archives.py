"""Unpacking tarballs a user supplies (model.tar.gz, sourcedir.tar.gz), safely.

Python's own ``filter="data"`` (PEP 706) refuses members that would land outside the
destination, links that point out of it, device files and setuid bits. It exists from
Python 3.11.4 on, and in distributions' backports; Debian 12's 3.11.2 (the base of the
images built offline) lacks it. There the same refusals are made by hand, so an archive
is handled alike whatever Python runs it.
"""

from __future__ import annotations

import tarfile
from pathlib import Path


def extract_all(archive: tarfile.TarFile, dest: Path) -> None:
    """Extract every member under ``dest``; a member that would escape it, or a device
    file, raises ``tarfile.TarError`` before anything is written."""
    if hasattr(tarfile, "data_filter"):
        archive.extractall(dest, filter="data")
        return
    root = dest.resolve()
    members = archive.getmembers()
    for member in members:
        _check(member, root)
    for member in members:
        # As the data filter does: no setuid/setgid/sticky bits, no group/other write.
        member.mode &= 0o755
    archive.extractall(dest, members=members)


def _check(member: tarfile.TarInfo, root: Path) -> None:
    member.name = member.name.lstrip("/")  # as the data filter: under dest, not at /
    target = (root / member.name).resolve()
    if not target.is_relative_to(root):
        raise tarfile.TarError(f"{member.name!r} would be extracted outside {root}")
    if member.isdev() or member.isfifo():
        raise tarfile.TarError(f"{member.name!r} is a device or FIFO, not data")
    if member.issym() or member.islnk():
        base = target.parent if member.issym() else root
        link = (base / member.linkname).resolve()
        if member.linkname.startswith("/") or not link.is_relative_to(root):
            raise tarfile.TarError(f"{member.name!r} links outside {root}: {member.linkname!r}")
