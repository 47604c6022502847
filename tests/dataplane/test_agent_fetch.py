"""``kubemaker-agent fetch-model`` as a real process, as an Endpoint's fleet pod runs it
before the serving image starts: from the loopback S3 server and from file://."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

AGENT = Path(sys.executable).parent / "kubemaker-agent"


def model_archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def fetch(uri: str, dest: Path, log: Path, env: dict[str, str] | None = None) -> int:
    command = [str(AGENT), "fetch-model", "--uri", uri, "--dest", str(dest)]
    command += ["--termination-log", str(log)]
    return subprocess.run(command, env={**os.environ, **(env or {})}, timeout=60).returncode


def test_fetches_and_unpacks_from_s3(
    s3_client: Any, s3_bucket: str, s3_endpoint: str, aws_env: dict[str, str], tmp_path: Path
) -> None:
    body = model_archive({"xgboost-model": b"tree", "code/inference.py": b"print()"})
    s3_client.put_object(Bucket=s3_bucket, Key="jobs/a/model.tar.gz", Body=body)
    env = {**aws_env, "AWS_ENDPOINT_URL_S3": s3_endpoint}
    code = fetch(f"s3://{s3_bucket}/jobs/a/model.tar.gz", tmp_path / "model", tmp_path / "log", env)
    assert code == 0
    assert (tmp_path / "model" / "xgboost-model").read_bytes() == b"tree"
    assert (tmp_path / "model" / "code" / "inference.py").is_file()


def test_a_missing_model_exits_1_naming_it(
    s3_bucket: str, s3_endpoint: str, aws_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**aws_env, "AWS_ENDPOINT_URL_S3": s3_endpoint}
    uri = f"s3://{s3_bucket}/nothing/model.tar.gz"
    assert fetch(uri, tmp_path / "model", tmp_path / "log", env) == 1
    assert uri in (tmp_path / "log").read_text()


def test_an_archive_that_does_not_unpack_exits_1_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "model.tar.gz"
    bad.write_bytes(b"this is not a tarball")
    assert fetch(bad.as_uri(), tmp_path / "model", tmp_path / "log") == 1
    assert "not a readable tar.gz archive" in (tmp_path / "log").read_text()


def test_an_archive_escaping_the_model_directory_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(model_archive({"../outside": b"x"}))
    assert fetch(archive.as_uri(), tmp_path / "model", tmp_path / "log") == 1
    assert not (tmp_path / "outside").exists()
