"""The MXNet labs' acceptance table: published accuracy, direct run, run through kubemaker.

For each lab (MNIST / Fashion-MNIST x MLP / CNN) this trains the lab's script twice
with the same seed and the workshop's full settings (10 epochs):

- **direct**: the script the manifest names, with the manifest's hyperparameters, run
  with plain Python in the MXNet environment, no kubemaker code at all (the
  ``train()``-interface labs are imported and called, as a notebook would; the
  script-mode labs are run with hyperparameters and channel paths as flags): see
  :func:`direct_command`, which tests/dataplane/test_mxnet_labs.py uses too;
- **kubemaker**: the lab's ``trainingjob.yaml`` through kubemaker's data plane, as
  local mode runs it: see :func:`run_through_kubemaker`.

and prints the final validation accuracy of each, the published figure, and the wall
times. Same seed, same data order, same initialisation: the two columns must be equal.

Targets: through kubemaker equal to direct (always), and within the lab's tolerance of
the published accuracy (checked at the manifest's own epochs, the workshop's settings;
``--epochs 1`` is a smoke run); with ``--recommender``, each model's RMSE below the
global-mean baseline. The exit status is 1 when a result misses one (each miss is
printed after the table), 0 when all are met.

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
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATASETS_SCRIPT = REPO / "scripts" / "datasets.py"


@dataclasses.dataclass(frozen=True)
class Lab:
    name: str
    published: float
    # Within this many points of the published figure, the lab is reproduced.
    tolerance_points: float


LABS = {
    "mnist-mlp": Lab("mnist-mlp", 0.9734, 0.5),
    "mnist-cnn": Lab("mnist-cnn", 0.9905, 0.5),
    "fashion-mnist-mlp": Lab("fashion-mnist-mlp", 0.8853, 2.0),
    "fashion-mnist-cnn": Lab("fashion-mnist-cnn", 0.9055, 2.0),
}


def mxnet_python() -> str:
    from kubemaker_runtime import frameworks

    try:
        return frameworks.get("mxnet").interpreter()
    except frameworks.FrameworkUnavailable as exc:
        sys.exit(str(exc))


def stage(lab: str) -> Path:
    """``scripts/datasets.py --example <lab>``: the lab's channels and code, where its
    trainingjob.yaml reads them; their directory."""
    done = subprocess.run(
        [sys.executable, str(DATASETS_SCRIPT), "-q", "--example", lab],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(done.stdout.strip())


def load_manifest(path: Path) -> dict[str, Any]:
    import yaml

    manifest: dict[str, Any] = yaml.safe_load(path.read_text())
    return manifest


def _as_python(value: str) -> Any:
    """A hyperparameter as a train() caller passes it: a number when it reads as one."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def direct_command(
    python: str,
    code_dir: Path,
    entry_point: str,
    channels: dict[str, Path],
    hyperparameters: dict[str, str],
    model_dir: Path,
) -> list[str]:
    """The command that runs a lab's script with plain Python (in ``code_dir``), as one
    would without kubemaker: a ``train()``-interface module imported and called, as a
    notebook would; a script-mode script with its hyperparameters and channels as flags."""
    source = (code_dir / entry_point).read_text()
    if "def train(" in source and "__main__" not in source:
        module = entry_point.removesuffix(".py")
        dirs = {name: str(path) for name, path in channels.items()}
        hps = {name: _as_python(value) for name, value in hyperparameters.items()}
        program = (
            f"import {module} as lab\n"
            f"net = lab.train({dirs!r}, {hps!r}, ['algo-1'], 0, current_host='algo-1')\n"
            f"lab.save(net, {str(model_dir)!r})\n"
        )
        return [python, "-c", program]
    flags = [f"--{name}={value}" for name, value in sorted(hyperparameters.items())]
    flags += [f"--{name}={path}" for name, path in channels.items()]
    return [python, entry_point, *flags, f"--model-dir={model_dir}"]


def last_metric(manifest: dict[str, Any], name: str, output: str) -> float:
    """A metric's last value in a direct run's output, found with the manifest's own
    metricDefinitions regex (what kubemaker applies to the job's log)."""
    definitions = manifest["spec"]["algorithmSpecification"]["metricDefinitions"]
    regex = next(d["regex"] for d in definitions if d["name"] == name)
    found = re.findall(regex, output)
    if not found:
        raise RuntimeError(f"no {name} in the output:\n{output[-3000:]}")
    return float(found[-1])


def lab_manifest(lab: Lab, epochs: int, seed: int, workdir: Path) -> Path:
    """The lab's trainingjob.yaml; a copy with other epochs / seed when asked for."""
    import yaml

    path = REPO / "examples" / lab.name / "trainingjob.yaml"
    manifest = load_manifest(path)
    hps = manifest["spec"]["hyperParameters"]
    if (hps.get("epochs"), hps.get("seed")) == (str(epochs), str(seed)):
        return path  # the full run: the manifest exactly as written
    hps["epochs"], hps["seed"] = str(epochs), str(seed)
    copy = workdir / f"{lab.name}-trainingjob.yaml"
    copy.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return copy


def timed_run(cmd: list[str], cwd: Path, what: str) -> tuple[str, float]:
    """Run ``cmd`` to its end; its output (stdout then stderr) and wall time."""
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout + done.stderr, elapsed


def run_direct(lab: Lab, epochs: int, seed: int, workdir: Path) -> tuple[float, float]:
    """The manifest's script, channels and hyperparameters, with plain Python: no
    kubemaker import anywhere in the process."""
    staged = stage(lab.name)
    manifest = load_manifest(lab_manifest(lab, epochs, seed, workdir))
    spec = manifest["spec"]
    code_dir = staged / "code"
    model_dir = workdir / f"{lab.name}-direct-model"
    model_dir.mkdir(parents=True, exist_ok=True)
    cmd = direct_command(
        mxnet_python(),
        code_dir,
        spec["algorithmSpecification"]["entryPoint"],
        {"train": staged / "train", "test": staged / "test"},
        spec["hyperParameters"],
        model_dir,
    )
    output, elapsed = timed_run(cmd, code_dir, f"{lab.name}: the direct run")
    return last_metric(manifest, "validation:accuracy", output), elapsed


def local_train(manifest: Path, workdir: Path) -> tuple[dict[str, Any], float]:
    """``kubemaker local train -f <manifest>``: the job's record, and the wall time."""
    name = load_manifest(manifest)["metadata"]["name"]
    jobs_dir = workdir / "local"
    cmd = [sys.executable, "-m", "kubemaker", "local", "train", "-f", str(manifest)]
    cmd += ["--workdir", str(jobs_dir), "--no-progress"]
    _, elapsed = timed_run(cmd, REPO, f"{name}: kubemaker local train")
    record: dict[str, Any] = json.loads((jobs_dir / name / "trainingjob.json").read_text())
    return record, elapsed


def final_metrics(record: dict[str, Any]) -> dict[str, float]:
    return {m["metricName"]: m["value"] for m in record["status"]["finalMetricDataList"]}


def run_through_kubemaker(lab: Lab, epochs: int, seed: int, workdir: Path) -> tuple[float, float]:
    """``kubemaker local train -f examples/<lab>/trainingjob.yaml``: the manifest parsed by
    the API model, the agent's configuration built by the operator's builder, then the
    agent and the MXNet image's ``train`` entry point as local processes. The accuracy
    is the job's ``validation:accuracy`` from its status (the metricDefinitions)."""
    stage(lab.name)
    record, elapsed = local_train(lab_manifest(lab, epochs, seed, workdir), workdir)
    return float(final_metrics(record)["validation:accuracy"]), elapsed


def run_recommender(workdir: Path) -> tuple[str, list[str]]:
    """Both recommender manifests through ``kubemaker local train``: their RMSE table, and
    the targets missed (a model whose held-out RMSE is not below the baseline's)."""
    stage("recommender-mf")
    lines = [
        "| model | held-out RMSE | global-mean baseline | improvement | wall time |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    missed = []
    for manifest in ("trainingjob.yaml", "trainingjob-neural.yaml"):
        record, elapsed = local_train(REPO / "examples" / "recommender-mf" / manifest, workdir)
        metrics = final_metrics(record)
        rmse, baseline = metrics["test:rmse"], metrics["baseline:rmse"]
        model = record["spec"]["hyperParameters"]["model"]
        print(f"recommender {model}: rmse {rmse:.4f} (baseline {baseline:.4f})", flush=True)
        lines.append(
            f"| {model} | {rmse:.4f} | {baseline:.4f} | "
            f"{100 * (baseline - rmse) / baseline:.1f}% | {elapsed:.0f} s |"
        )
        if not rmse < baseline:
            missed.append(
                f"recommender {model}: RMSE {rmse:.4f} is not below the baseline {baseline:.4f}"
            )
    return "\n".join(lines), missed


def manifest_epochs(lab: Lab) -> int:
    """The epochs of the lab's trainingjob.yaml: the settings the published figure used."""
    manifest = load_manifest(REPO / "examples" / lab.name / "trainingjob.yaml")
    return int(manifest["spec"]["hyperParameters"]["epochs"])


def accuracy_target_applies(lab: Lab, row: dict[str, float]) -> bool:
    """The published accuracy is a target only for a run at the manifest's epochs."""
    return "epochs" not in row or int(row["epochs"]) == manifest_epochs(lab)


def within_target(lab: Lab, accuracy: float) -> bool:
    return abs(accuracy - lab.published) * 100 <= lab.tolerance_points


def missed_targets(results: dict[str, dict[str, float]]) -> list[str]:
    """One line per target a lab's result misses: through kubemaker not equal to direct;
    the accuracy (kubemaker's, else direct's) outside the lab's tolerance of the published
    figure, for a run at the manifest's epochs."""
    missed = []
    for name, lab in LABS.items():
        row = results.get(name)
        if not row:
            continue
        direct, through = row.get("direct"), row.get("kubemaker")
        if direct is not None and through is not None and direct != through:
            missed.append(f"{name}: through kubemaker {through:.4f} != direct {direct:.4f}")
        best = through if through is not None else direct
        if best is not None and accuracy_target_applies(lab, row) and not within_target(lab, best):
            missed.append(
                f"{name}: accuracy {best:.4f} is {100 * (best - lab.published):+.2f} points from "
                f"the published {lab.published:.4f} (target ±{lab.tolerance_points:g})"
            )
    return missed


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
        if best is not None and not accuracy_target_applies(lab, row):
            epochs = int(row["epochs"])
            within = f"- ({epochs} epoch{'' if epochs == 1 else 's'})"
        elif best is not None:
            within = "yes" if within_target(lab, best) else "no"
            within += f" ({100 * (best - lab.published):+.2f} pt, ±{lab.tolerance_points:g})"

        def fmt(v: float | None) -> str:
            return f"{v:.4f}" if v is not None else "-"

        def secs(v: float | None) -> str:
            return f"{v:.0f} s" if v is not None else "-"

        lines.append(
            f"| {name} | {lab.published:.4f} | {fmt(direct)} | {fmt(through)} | {same} | "
            f"{within} | {secs(row.get('direct_seconds'))} | "
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
    missed = missed_targets(results)
    if args.recommender:
        with tempfile.TemporaryDirectory(prefix="mxnet-recommender-") as tmp:
            table, recommender_missed = run_recommender(Path(tmp))
        print(table)
        missed += recommender_missed
    for line in missed:
        print(f"target missed: {line}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
