"""``file:///path`` and ``pvc://claim/path``: files on a mounted filesystem.

A ``pvc://claim/path`` URI is read at ``<pvc_root>/claim/path``, where the operator
mounts the claim (``StorageConfig.pvc_root``). Objects are either copied (the
default: the algorithm container needs no access to the source) or symlinked
(``link=True``: no copy at all, when the algorithm sees the source at the same path,
as in local mode).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO

from kubemaker_runtime.storage.base import (
    AccessDeniedError,
    NotFoundError,
    StoredObject,
    TransientError,
    split_uri,
    temp_path_for,
)


def _raise(error: OSError) -> None:
    raise error


class LocalStore:
    def __init__(self, *, pvc_root: str | os.PathLike[str] = "/kubemaker/pvc", link: bool = False):
        self.pvc_root = Path(pvc_root)
        self.link = link

    def path_of(self, uri: str) -> Path:
        scheme, rest = split_uri(uri)
        if scheme == "file":
            # file:///abs/path -> rest "/abs/path"; file://relative is read as given.
            return Path(rest or "/")
        if scheme == "pvc":
            claim, _, sub = rest.partition("/")
            if not claim:
                raise NotFoundError(f"{uri!r} names no PersistentVolumeClaim")
            return self.pvc_root / claim / sub
        raise NotFoundError(f"{uri!r}: LocalStore reads file:// and pvc:// only")

    def list(self, uri: str) -> list[StoredObject]:
        root = self.path_of(uri)
        base = uri.rstrip("/")
        try:
            if root.is_file():
                stat = root.stat()
                return [
                    StoredObject(uri=base, key=root.name, size=stat.st_size, mtime=stat.st_mtime)
                ]
            if not root.is_dir():
                raise NotFoundError(f"{uri} does not exist (looked at {root})")
            objects = []
            for dirpath, _dirnames, filenames in os.walk(root, followlinks=True, onerror=_raise):
                for name in filenames:
                    path = Path(dirpath) / name
                    rel = path.relative_to(root).as_posix()
                    stat = path.stat()
                    objects.append(
                        StoredObject(
                            uri=f"{base}/{rel}", key=rel, size=stat.st_size, mtime=stat.st_mtime
                        )
                    )
        except PermissionError as exc:
            raise AccessDeniedError(f"cannot read {uri} ({root}): {exc}") from exc
        except OSError as exc:
            raise TransientError(f"listing {uri} ({root}): {exc}") from exc
        objects.sort(key=lambda o: o.key)
        return objects

    def download(self, obj: StoredObject, dest: Path) -> int:
        src = self.path_of(obj.uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_for(dest)
        try:
            if self.link:
                tmp.symlink_to(src.resolve())
                tmp.replace(dest)
                return 0
            shutil.copy2(src, tmp)
            tmp.replace(dest)
        except FileNotFoundError as exc:
            raise NotFoundError(f"{obj.uri} does not exist ({src})") from exc
        except PermissionError as exc:
            raise AccessDeniedError(f"cannot read {obj.uri} ({src}): {exc}") from exc
        except OSError as exc:
            raise TransientError(f"copying {obj.uri} ({src}): {exc}") from exc
        finally:
            if tmp.is_symlink() or tmp.exists():
                tmp.unlink()
        return obj.size

    def open(self, obj: StoredObject) -> BinaryIO:
        try:
            return self.path_of(obj.uri).open("rb")
        except FileNotFoundError as exc:
            raise NotFoundError(f"{obj.uri} does not exist") from exc
        except PermissionError as exc:
            raise AccessDeniedError(f"cannot read {obj.uri}: {exc}") from exc

    def upload(self, src: Path, uri: str) -> int:
        dest = self.path_of(uri)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_path_for(dest)
            shutil.copyfile(src, tmp)
            tmp.replace(dest)
        except PermissionError as exc:
            raise AccessDeniedError(f"cannot write {uri} ({dest}): {exc}") from exc
        except OSError as exc:
            raise TransientError(f"writing {uri} ({dest}): {exc}") from exc
        return src.stat().st_size
