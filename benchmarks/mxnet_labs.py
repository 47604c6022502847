"""The MXNet labs' acceptance table: published accuracy, direct run, run through kubemaker.

For each lab (MNIST / Fashion-MNIST x MLP / CNN) this trains the lab's script twice
with the same seed and the workshop's full settings (10 epochs):

- **direct**: the script with plain Python in the MXNet environment, no kubemaker code
  at all (the ``train()``-interface labs are imported and called, as a notebook would;
  the script-mode labs are run with their channel paths as flags);
- **kubemaker**: the lab's ``trainingjob.yaml`` through kubemaker's data plane, as
  local mode runs it: see :func:`run_through_kubemaker`.

and prints the final validation accuracy of each, the published figure, and the wall
times. Same seed, same data order, same initialisation: the two columns must be equal.

    python benchmarks/mxnet_labs.py                      # all four labs, 10 epochs
    python benchmarks/mxnet_labs.py --labs mnist-mlp --epochs 1
    python benchmarks/mxnet_labs.py --results labs.json --table-only
    python benchmarks/mxnet_labs.py --labs mnist-mlp --modes kubemaker --recommender

Runs take minutes each on two cores: run it with ``nice``, alone. Needs the MXNet
environment (``scripts/mxnet-env.sh``) and the datasets (``scripts/datasets.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VALIDATION_RE = re.compile(r"\[Epoch (\d+)\] Validation: accuracy=([0-9.]+)")


@dataclasses.dataclass(frozen=True)
class Lab:
    name: str
    dataset: str
    script: str  # under examples/<name>/code/
    interface: str  # "train-function" or "script"
    published: float
    # Within this many points of the published figure, the lab is reproduced.
    tolerance_points: float


LABS = {
    "mnist-mlp": Lab("mnist-mlp", "mnist", "mnist_mlp.py", "train-function", 0.9734, 0.5),
    "mnist-cnn": Lab("mnist-cnn", "mnist", "mnist_cnn.py", "script", 0.9905, 0.5),
    "fashion-mnist-mlp": Lab(
        "fashion-mnist-mlp", "fashion-mnist", "fashion_mnist_mlp.py", "train-function", 0.8853, 2.0
    ),
    "fashion-mnist-cnn": Lab(
        "fashion-mnist-cnn", "fashion-mnist", "fashion_mnist_cnn.py", "script", 0.9055, 2.0
    ),
}


def cache_root() -> Path:
    return Path(os.environ.get("KUBEMAKER_CACHE") or Path.home() / ".cache" / "kubemaker")


def mxnet_python() -> str:
    found = os.environ.get("KUBEMAKER_MXNET_PYTHON") or str(cache_root() / "venv-mxnet/bin/python")
    if not Path(found).exists():
        sys.exit(f"no MXNet environment at {found}: run scripts/mxnet-env.sh")
    return found


def dataset_dir(name: str) -> Path:
    root = cache_root() / "datasets" / name
    if not root.is_dir():
        sys.exit(f"no {name} dataset at {root}: run python scripts/datasets.py {name}")
    return root


def final_accuracy(output: str) -> float:
    found = VALIDATION_RE.findall(output)
    if not found:
        raise RuntimeError(f"no validation accuracy in the output:\n{output[-3000:]}")
    return float(found[-1][1])


def run_direct(lab: Lab, epochs: int, seed: int, workdir: Path) -> tuple[float, float]:
    """Plain Python: no kubemaker import anywhere in the process."""
    data = dataset_dir(lab.dataset)
    code = REPO / "examples" / lab.name / "code"
    model_dir = workdir / f"{lab.name}-direct-model"
    model_dir.mkdir(parents=True, exist_ok=True)
    if lab.interface == "train-function":
        module = lab.script.removesuffix(".py")
        program = (
            f"import {module} as lab\n"
            f"net = lab.train({{'train': {str(data / 'train')!r}, 'test': {str(data / 'test')!r}}},"
            f" {{'epochs': {epochs}, 'seed': {seed}}}, ['algo-1'], 0, current_host='algo-1')\n"
            f"lab.save(net, {str(model_dir)!r})\n"
        )
        cmd = [mxnet_python(), "-c", program]
    else:
        cmd = [
            mxnet_python(),
            lab.script,
            "--train",
            str(data / "train"),
            "--test",
            str(data / "test"),
            "--model-dir",
            str(model_dir),
            "--epochs",
            str(epochs),
            "--seed",
            str(seed),
        ]
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=code, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"{lab.name} direct run failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        )
    return final_accuracy(done.stdout + done.stderr), elapsed


def manifest_for(lab: str, epochs: int, seed: int, workdir: Path) -> Path:
    """The lab's trainingjob.yaml; a copy with other epochs / seed when asked for."""
    import yaml

    path = REPO / "examples" / lab / "trainingjob.yaml"
    manifest = yaml.safe_load(path.read_text())
    hps = manifest["spec"]["hyperParameters"]
    if (hps.get("epochs"), hps.get("seed")) == (str(epochs), str(seed)):
        return path  # the full run: the manifest exactly as written
    hps["epochs"], hps["seed"] = str(epochs), str(seed)
    copy = workdir / f"{lab}-trainingjob.yaml"
    copy.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return copy


def run_through_kubemaker(lab: Lab, epochs: int, seed: int, workdir: Path) -> tuple[float, float]:
    """``kubemaker local train -f examples/<lab>/trainingjob.yaml``: the manifest parsed by
    the API model, the agent's configuration built by the operator's builder, then the
    agent and the MXNet image's ``train`` entry point as local processes. The accuracy
    is the job's ``validation:accuracy`` from its status (the metricDefinitions)."""
    stage = [sys.executable, str(REPO / "scripts/datasets.py"), "-q", "--example", lab.name]
    subprocess.run(stage, check=True, stdout=subprocess.DEVNULL)
    manifest = manifest_for(lab.name, epochs, seed, workdir)
    jobs_dir = workdir / "local"
    cmd = [
        sys.executable,
        "-m",
        "kubemaker",
        "local",
        "train",
        "-f",
        str(manifest),
        "--workdir",
        str(jobs_dir),
        "--no-progress",
    ]
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"{lab.name}: kubemaker local train failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    record = json.loads((jobs_dir / lab.name / "trainingjob.json").read_text())
    metrics = {m["metricName"]: m["value"] for m in record["status"]["finalMetricDataList"]}
    return float(metrics["validation:accuracy"]), elapsed


def run_recommender(workdir: Path) -> str:
    """Both recommender manifests through ``kubemaker local train``; their RMSE table."""
    stage = [sys.executable, str(REPO / "scripts/datasets.py"), "-q", "--example", "recommender-mf"]
    subprocess.run(stage, check=True, stdout=subprocess.DEVNULL)
    lines = [
        "| model | held-out RMSE | global-mean baseline | improvement | wall time |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for manifest in ("trainingjob.yaml", "trainingjob-neural.yaml"):
        path = REPO / "examples" / "recommender-mf" / manifest
        jobs_dir = workdir / "local"
        cmd = [
            sys.executable,
            "-m",
            "kubemaker",
            "local",
            "train",
            "-f",
            str(path),
            "--workdir",
            str(jobs_dir),
            "--no-progress",
        ]
        start = time.monotonic()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - start
        if done.returncode != 0:
            raise RuntimeError(f"{manifest} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
        import yaml

        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        record = json.loads((jobs_dir / name / "trainingjob.json").read_text())
        metrics = {m["metricName"]: m["value"] for m in record["status"]["finalMetricDataList"]}
        rmse, baseline = metrics["test:rmse"], metrics["baseline:rmse"]
        model = record["spec"]["hyperParameters"]["model"]
        print(f"recommender {model}: rmse {rmse:.4f} (baseline {baseline:.4f})", flush=True)
        lines.append(
            f"| {model} | {rmse:.4f} | {baseline:.4f} | "
            f"{100 * (baseline - rmse) / baseline:.1f}% | {elapsed:.0f} s |"
        )
    return "\n".join(lines)


def format_table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| lab | published | direct | through kubemaker | same | within target | "
        "direct wall time | kubemaker wall time |",
        "| --- | ---: | ---: | ---: | :---: | :---: | ---: | ---: |",
    ]
    for name, lab in LABS.items():
        row = results.get(name)
        if not row:
            continue
        direct = row.get("direct")
        through = row.get("kubemaker")
        same = ""
        if direct is not None and through is not None:
            same = "yes" if direct == through else "no"
        best = through if through is not None else direct
        within = ""
        if best is not None:
            within = "yes" if abs(best - lab.published) * 100 <= lab.tolerance_points else "no"

        def fmt(v: float | None) -> str:
            return f"{v:.4f}" if v is not None else "-"

        def secs(v: float | None) -> str:
            return f"{v:.0f} s" if v is not None else "-"

        lines.append(
            f"| {name} | {lab.published:.4f} | {fmt(direct)} | {fmt(through)} | {same} | "
            f"{within} (±{lab.tolerance_points:g}) | {secs(row.get('direct_seconds'))} | "
            f"{secs(row.get('kubemaker_seconds'))} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labs", nargs="+", choices=list(LABS), default=list(LABS))
    parser.add_argument(
        "--modes", nargs="+", choices=["direct", "kubemaker"], default=["direct", "kubemaker"]
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--results", type=Path, help="JSON file to merge results into (kept across runs)"
    )
    parser.add_argument(
        "--table-only", action="store_true", help="print the table from --results without training"
    )
    parser.add_argument(
        "--recommender",
        action="store_true",
        help="then run both recommender manifests and print their held-out RMSEs",
    )
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    if args.results and args.results.exists():
        results = json.loads(args.results.read_text())
    if not args.table_only:
        runners = {"direct": run_direct, "kubemaker": run_through_kubemaker}
        with tempfile.TemporaryDirectory(prefix="mxnet-labs-") as tmp:
            for name in args.labs:
                for mode in args.modes:
                    accuracy, seconds = runners[mode](LABS[name], args.epochs, args.seed, Path(tmp))
                    print(f"{name} {mode}: accuracy {accuracy:.4f} in {seconds:.0f} s", flush=True)
                    row = results.setdefault(name, {})
                    row[mode], row[f"{mode}_seconds"] = accuracy, round(seconds, 1)
                    row["epochs"], row["seed"] = args.epochs, args.seed
                    if args.results:
                        args.results.write_text(
                            json.dumps(results, indent=1, sort_keys=True) + "\n"
                        )
    print(format_table(results))
    if args.recommender:
        with tempfile.TemporaryDirectory(prefix="mxnet-recommender-") as tmp:
            print(run_recommender(Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
