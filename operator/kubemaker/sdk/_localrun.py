"""Local mode for the SDK: ``instance_type="local"`` runs through ``kubemaker local``.

Each job is the same manifest a cluster would get, run by ``kubemaker local
train|tune|transform`` in a process of its own (its output in a log file beside the
job, shown while it runs), so the SDK and the command line behave alike and a crash of
one job cannot take the notebook down. An endpoint is ``kubemaker local serve`` left
running in the background until ``delete_endpoint``; the objects' status is read back
from the records local mode writes, as ``kubectl get -o json`` would show them.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubemaker.sdk._http import post
from kubemaker.sdk.exceptions import ModelError

JSON = dict[str, Any]
SDK_DIR = ".sdk"
COMMANDS = {"TrainingJob": "train", "TuningJob": "tune", "BatchTransform": "transform"}
STARTUP_SECONDS = 300.0
TAIL_LINES = 30
NOTHING_RAN = 2  # kubemaker local's exit code when it refused to start


@dataclass
class LocalEndpoint:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    manifest: JSON


class LocalRunner:
    """Processes of ``kubemaker local`` under one work directory."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir.resolve()
        self.env = env
        self.jobs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self.endpoints: dict[str, LocalEndpoint] = {}
        atexit.register(self.close)

    def _files(self, kind: str, name: str) -> tuple[Path, Path]:
        folder = self.workdir / SDK_DIR
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{kind.lower()}-{name}"
        return folder / f"{stem}.yaml", folder / f"{stem}.log"

    def _popen(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "kubemaker", "local", *args, "--workdir", str(self.workdir)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )

    # --- jobs ----------------------------------------------------------------------------

    def create(self, manifest: JSON) -> JSON:
        """Start a TrainingJob, TuningJob or BatchTransform here."""
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        path, log = self._files(kind, name)
        path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
        args = [COMMANDS[kind], "-f", str(path)]
        if kind == "TrainingJob":
            args.append("--no-progress")
        self.jobs[kind, name] = self._popen(args, log)
        print(f"kubemaker: started local {kind} {name} (log: {log})", flush=True)
        return manifest

    def wait_for(self, kind: str, name: str, *, logs: bool) -> JSON:
        """Wait for the job's process, showing its output with ``logs``; its record."""
        process = self.jobs.get((kind, name))
        _, log = self._files(kind, name)
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        if process is not None:
            with log.open("rb") as reader:
                while True:
                    ended = process.poll() is not None
                    while True:
                        start = reader.tell()
                        raw = reader.readline()
                        if not raw.endswith(b"\n") and not (ended and raw):
                            reader.seek(start)  # a line still being written: next round
                            break
                        line = raw.decode(errors="replace").rstrip("\n")
                        tail.append(line)
                        if logs:
                            print(line, flush=True)
                    if ended:
                        break
                    time.sleep(0.2)
        # Exit code 2: nothing ran (a refused manifest, a missing environment); a record
        # of the same name would be an earlier run's.
        if process is None or process.returncode != NOTHING_RAN:
            with contextlib.suppress(LookupError):
                return self.get(kind, name)
        output = "\n".join(tail)
        code = process.returncode if process else "?"
        raise RuntimeError(f"local {kind} {name} did not run (exit code {code}):\n{output}")

    def get(self, kind: str, name: str) -> JSON:
        if kind == "Endpoint":
            return self._endpoint_object(name)
        path = {
            "TrainingJob": self.workdir / name / "trainingjob.json",
            "TuningJob": self.workdir / name / "tuning.json",
            "BatchTransform": self.workdir / name / "batchtransform.json",
        }[kind]
        if kind == "TrainingJob" and not path.exists():
            # A tuning job's trial lives in the tuning job's directory.
            path = next(iter(self.workdir.glob(f"*/{name}/trainingjob.json")), path)
        try:
            body: JSON = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LookupError(f"{kind} {name}: no local run of it in {self.workdir}") from None
        if kind == "TuningJob":
            return next(i for i in body["items"] if i.get("kind") == "TuningJob")
        return body

    def trials(self, tuning_job: str) -> list[JSON]:
        body = json.loads((self.workdir / tuning_job / "tuning.json").read_text(encoding="utf-8"))
        return [i for i in body["items"] if i.get("kind") == "TrainingJob"]

    def stop(self, kind: str, name: str) -> None:
        process = self.jobs.get((kind, name))
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)

    # --- endpoints -----------------------------------------------------------------------

    def deploy(self, manifest: JSON, *, wait: bool = True) -> JSON:
        """Serve the Endpoint with ``kubemaker local serve`` on a free port."""
        from kubemaker.local.launch import LOOPBACK, free_port

        name = manifest["metadata"]["name"]
        self.delete_endpoint(name, quiet=True)
        path, log = self._files("Endpoint", name)
        path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
        port = free_port(LOOPBACK)
        process = self._popen(["serve", "-f", str(path), "--port", str(port)], log)
        endpoint = LocalEndpoint(name, f"http://{LOOPBACK}:{port}", process, log, manifest)
        self.endpoints[name] = endpoint
        print(f"kubemaker: serving local Endpoint {name} at {endpoint.url} (log: {log})")
        if wait:
            self._wait_in_service(endpoint)
        return self._endpoint_object(name)

    def _wait_in_service(self, endpoint: LocalEndpoint) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if endpoint.process.poll() is not None:
                self.endpoints.pop(endpoint.name, None)
                output = endpoint.log.read_text(encoding="utf-8", errors="replace")
                tail = "\n".join(output.splitlines()[-TAIL_LINES:])
                raise RuntimeError(f"local Endpoint {endpoint.name} did not start:\n{tail}")
            try:
                with urllib.request.urlopen(f"{endpoint.url}/ping", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"local Endpoint {endpoint.name}: no answer to /ping")

    def _endpoint_object(self, name: str) -> JSON:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise LookupError(f"Endpoint {name}: not served here")
        running = endpoint.process.poll() is None
        return {
            **endpoint.manifest,
            "status": {
                "endpointStatus": "InService" if running else "Failed",
                "endpointUrl": endpoint.url,
            },
        }

    def update_endpoint(self, name: str, manifest: JSON) -> JSON:
        return self.deploy(manifest)

    def delete_endpoint(self, name: str, *, quiet: bool = False) -> None:
        endpoint = self.endpoints.pop(name, None)
        if endpoint is None:
            if quiet:
                return
            raise LookupError(f"Endpoint {name}: not served here")
        _stop(endpoint.process)
        if not quiet:
            print(f"kubemaker: stopped local Endpoint {name}", flush=True)

    def invoke(
        self,
        endpoint: str,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        target_variant: str | None,
    ) -> tuple[bytes, str]:
        served = self.endpoints.get(endpoint)
        if served is None:
            raise ModelError(f"Endpoint {endpoint} is not served here", 404)
        return post(f"{served.url}/invocations", body, content_type, accept, target_variant)

    def close(self) -> None:
        for name in list(self.endpoints):
            self.delete_endpoint(name, quiet=True)
        for process in self.jobs.values():
            if process.poll() is None:
                _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
