"""``kubemaker tuning plot``: a TuningJob's trials as a PNG.

    kubemaker tuning plot NAME [-n NAMESPACE] [--kubeconfig PATH] [--context NAME] [-o OUT]
    kubemaker tuning plot --dir WORKDIR/NAME [-o OUT]

The first reads the TuningJob and its trials (``kubectl get tj -l
kubemaker.io/tuning-job=NAME``) from the cluster, the second what ``kubemaker local tune``
wrote (``tuning.json``: the same objects). Either way every trial goes through the
controller's ``TrialView.from_body`` into a :class:`TrialRecord`, and
:func:`plot_trials`, a function of those records alone, draws:

- the objective per trial: completed trials as points, the best so far as a line, trials
  stopped early at their last intermediate value, failed ones along the bottom;
- the learning curves: each trial's intermediate objective values (its
  ``status.metricSeries``), when the trials logged any;
- one panel per tuned hyperparameter: its value against the objective (a log axis for a
  range searched on a log scale).

matplotlib (the ``plot`` extra) is imported only to draw, with its Agg renderer.
Exit codes: 0 written; 2 nothing to plot or nothing found (the reason is printed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

JSON = dict[str, Any]
TUNING_RECORD = "tuning.json"  # kubemaker.local.tuning writes it
INSTALL_HINT = "pip install 'kubemaker[plot]'"

# Colours of the trials' fates, the same in every panel.
COMPLETED = "tab:blue"
BEST = "gold"
STOPPED_EARLY = "tab:orange"
STOPPED = "tab:gray"
FAILED = "tab:red"


class PlotError(Exception):
    """Nothing to plot, or nothing found; the message says why."""


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the plot sees it."""

    name: str
    number: int  # 1 for the search's first trial
    status: str  # InProgress, Stopping, Completed, Failed or Stopped
    hyperparameters: Mapping[str, str]  # the tuned ones
    objective: float | None = None  # a completed trial's final objective
    series: Sequence[tuple[int, float]] = ()  # the objective's intermediate values
    stopped_early: str | None = None

    @property
    def last_value(self) -> float | None:
        return self.series[-1][1] if self.series else None


@dataclass(frozen=True)
class Parameter:
    """A tuned hyperparameter: drawn on a log axis, or as categories."""

    name: str
    log: bool = False
    categories: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Search:
    """What the records alone do not say."""

    metric: str
    maximize: bool = True
    parameters: Sequence[Parameter] = field(default_factory=tuple)
    title: str = ""


# --- the plot -------------------------------------------------------------------------------


def plot_trials(trials: Sequence[TrialRecord], out: Path, search: Search) -> Path:
    """Write the PNG of ``trials`` to ``out``; ValueError when there is no trial."""
    if not trials:
        raise ValueError("no trials to plot: the search has created none yet")
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise PlotError(f"matplotlib is not installed: {INSTALL_HINT}") from None

    trials = sorted(trials, key=lambda t: t.number)
    parameters = list(search.parameters) or _parameters_of(trials)
    curves = any(t.series for t in trials)
    columns = 3  # parameter panels per row; the top row halves the same width
    rows = math.ceil(len(parameters) / columns)
    fig = Figure(figsize=(13, 4.6 + 3.0 * rows), layout="constrained")
    if search.title:
        fig.suptitle(search.title)
    grid = fig.add_gridspec(1 + rows, 2 * columns, height_ratios=[4.6] + [3.0] * rows)
    best = _best(trials, search.maximize)
    objective_ax = fig.add_subplot(grid[0, :columns] if curves else grid[0, :])
    _objective_panel(objective_ax, trials, best, search)
    objective_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if curves:
        _curves_panel(fig.add_subplot(grid[0, columns:]), trials, best, search)
    last = max(t.number for t in trials)
    panels = []
    mappable = None
    for i, parameter in enumerate(parameters):
        row, column = divmod(i, columns)
        ax = fig.add_subplot(grid[1 + row, 2 * column : 2 * column + 2])
        mappable = _parameter_panel(ax, trials, best, parameter, last) or mappable
        if column == 0:
            ax.set_ylabel(search.metric)
        panels.append(ax)
    if mappable is not None:
        fig.colorbar(mappable, ax=panels, label="trial", shrink=0.9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100)
    return out


def _best(trials: Sequence[TrialRecord], maximize: bool) -> TrialRecord | None:
    done = [t for t in trials if t.objective is not None and math.isfinite(t.objective)]
    if not done:
        return None
    sign = -1.0 if maximize else 1.0
    return min(done, key=lambda t: (sign * (t.objective or 0.0), t.number))


def _xy(points: Iterable[tuple[float | None, float | None]]) -> tuple[list[float], list[float]]:
    """The points with both coordinates, as two lists."""
    xs: list[float] = []
    ys: list[float] = []
    for x, y in points:
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def _fate(trial: TrialRecord) -> str:
    if trial.status in ("InProgress", "Stopping"):
        return "running"
    if trial.status == "Stopped":
        return "early" if trial.stopped_early else "stopped"
    if trial.status == "Completed" and trial.objective is not None:
        return "completed"
    return "failed"


def _objective_panel(
    ax: Axes, trials: Sequence[TrialRecord], best: TrialRecord | None, search: Search
) -> None:
    xs, ys = _xy((t.number, t.objective) for t in trials)
    if xs:
        ax.scatter(xs, ys, color=COMPLETED, s=28, zorder=3, label="completed")
        steps: list[float] = []
        so_far: list[float] = []
        for x, y in zip(xs, ys, strict=True):
            better = not so_far or (y > so_far[-1] if search.maximize else y < so_far[-1])
            steps.append(x)
            so_far.append(y if better else so_far[-1])
        steps.append(max(t.number for t in trials))
        so_far.append(so_far[-1])
        ax.step(steps, so_far, where="post", color="black", linewidth=1.2, label="best so far")
    if best is not None and best.objective is not None:
        ax.scatter([best.number], [best.objective], marker="*", s=220, color=BEST,
                   edgecolor="black", zorder=4,
                   label=f"best: {best.name} ({best.objective:.4g})")  # fmt: skip
    for fate, color, marker, label in (
        ("early", STOPPED_EARLY, "X", "stopped early (last value)"),
        ("stopped", STOPPED, "x", "stopped (last value)"),
        ("running", "black", "+", "running (last value)"),
    ):
        xs, ys = _xy((t.number, t.last_value) for t in trials if _fate(t) == fate)
        if xs:
            ax.scatter(xs, ys, color=color, marker=marker, s=40, zorder=3, label=label)
    # Trials without any value, along the bottom.
    for fates, color, label in (
        (("failed",), FAILED, "failed (no objective)"),
        (("early", "stopped"), STOPPED, "stopped before any value"),
    ):
        lost = [t.number for t in trials if _fate(t) in fates and t.last_value is None
                and t.objective is None]  # fmt: skip
        if lost:
            ax.scatter(lost, [0.02] * len(lost), marker="v", color=color, s=40,
                       transform=ax.get_xaxis_transform(), clip_on=False, zorder=3,
                       label=label)  # fmt: skip
    ax.set_xlabel("trial")
    ax.set_ylabel(search.metric)
    direction = "maximize" if search.maximize else "minimize"
    ax.set_title(f"{search.metric} per trial ({direction})")
    ax.grid(alpha=0.3)
    # Below the panel: inside, it would hide trials.
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=3)


def _curves_panel(
    ax: Axes, trials: Sequence[TrialRecord], best: TrialRecord | None, search: Search
) -> None:
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    cmap = colormaps["viridis"]
    last = max(t.number for t in trials)
    for t in trials:
        if not t.series or t is best:  # the best is drawn last, on top
            continue
        steps = [s for s, _ in t.series]
        values = [v for _, v in t.series]
        if _fate(t) == "early":
            ax.plot(steps, values, color=STOPPED_EARLY, linestyle="--", linewidth=1, alpha=0.9)
            ax.plot(steps[-1:], values[-1:], marker="X", color=STOPPED_EARLY, linestyle="none")
        else:
            color = cmap(t.number / last) if _fate(t) == "completed" else STOPPED
            ax.plot(steps, values, color=color, linewidth=1, alpha=0.7)
    if best is not None and best.series:
        ax.plot([s for s, _ in best.series], [v for _, v in best.series], color="black",
                linewidth=2.2)  # fmt: skip
    fates = {_fate(t) for t in trials if t.series}
    handles = [Line2D([], [], color=cmap(0.5), label="completed (colour: trial)")]
    if "early" in fates:
        handles.append(
            Line2D([], [], color=STOPPED_EARLY, linestyle="--", marker="X", label="stopped early")
        )
    if fates & {"stopped", "failed", "running"}:
        handles.append(Line2D([], [], color=STOPPED, label="stopped, failed or running"))
    if best is not None and best.series:
        handles.append(Line2D([], [], color="black", linewidth=2.2, label="best"))
    ax.legend(handles=handles, fontsize="small", loc="best")
    ax.set_xlabel("step (the metric's n-th value in the log)")
    ax.set_ylabel(search.metric)
    ax.set_title("learning curves")
    ax.grid(alpha=0.3)


def _parameter_panel(
    ax: Axes,
    trials: Sequence[TrialRecord],
    best: TrialRecord | None,
    parameter: Parameter,
    last: int,
) -> Any:
    """One hyperparameter against the objective; the points' colour mapping, if any."""

    def position(trial: TrialRecord) -> float | None:
        value = trial.hyperparameters.get(parameter.name)
        if value is None:
            return None
        if parameter.categories is not None:
            known = value in parameter.categories
            return float(parameter.categories.index(value)) if known else None
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) and (number > 0 or not parameter.log) else None

    mappable = None
    done = [t for t in trials if t.objective is not None and position(t) is not None]
    xs, ys = _xy((position(t), t.objective) for t in done)
    if xs:
        mappable = ax.scatter(xs, ys, c=[t.number for t in done], cmap="viridis", vmin=1,
                              vmax=max(last, 2), s=26, zorder=3)  # fmt: skip
    xs, ys = _xy((position(t), t.last_value) for t in trials if _fate(t) == "early")
    if xs:
        ax.scatter(xs, ys, marker="X", color=STOPPED_EARLY, s=30, zorder=3)
    if best is not None:
        xs, ys = _xy([(position(best), best.objective)])
        if xs:
            ax.scatter(xs, ys, marker="*", s=200, color=BEST, edgecolor="black", zorder=4)
    if parameter.categories is not None:
        ax.set_xticks(range(len(parameter.categories)), parameter.categories)
    elif parameter.log:
        ax.set_xscale("log")
    ax.set_title(parameter.name + (" (log scale)" if parameter.log else ""), fontsize="medium")
    ax.grid(alpha=0.3)
    return mappable


def _parameters_of(trials: Sequence[TrialRecord]) -> list[Parameter]:
    """The tuned hyperparameters the records show (numbers, else categories)."""
    names = sorted({name for t in trials for name in t.hyperparameters})
    found = []
    for name in names:
        values = [t.hyperparameters[name] for t in trials if name in t.hyperparameters]
        try:
            for value in values:
                float(value)
            found.append(Parameter(name))
        except ValueError:
            found.append(Parameter(name, categories=tuple(dict.fromkeys(values))))
    return found


# --- records from objects -------------------------------------------------------------------


def records_from_objects(
    tuning: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]
) -> tuple[list[TrialRecord], Search]:
    """A TuningJob's and its trials' bodies (the cluster's, or tuning.json's items) as
    records and what the plot needs of the spec."""
    from pydantic import ValidationError

    from kubemaker.api.tuning import TuningJobSpec
    from kubemaker.builders.errors import validation_message
    from kubemaker.planners.tuning_views import TrialView

    name = str((tuning.get("metadata") or {}).get("name", ""))
    try:
        spec = TuningJobSpec.model_validate(tuning.get("spec") or {})
    except ValidationError as exc:
        raise PlotError(f"TuningJob {name}: {validation_message(exc)}") from None
    from kubemaker.builders import tuning as tb

    config = spec.hyper_parameter_tuning_job_config
    objective = config.hyper_parameter_tuning_job_objective
    parameters = _parameters(spec)
    tuned = {p.name for p in parameters}
    records = []
    for body in trials:
        labels = (body.get("metadata") or {}).get("labels") or {}
        if labels.get("kubemaker.io/tuning-job") != name:
            continue
        view = TrialView.from_body(body)
        if view is None:
            continue
        definition = tb.definition(spec, view.definition)
        metric = definition.metric if definition else objective.metric_name
        value = view.final_metrics.get(metric)
        records.append(
            TrialRecord(
                name=view.name,
                number=view.index + 1,
                status=view.training_job_status or "InProgress",
                hyperparameters={k: v for k, v in view.hyperparameters.items() if k in tuned},
                objective=value if view.training_job_status == "Completed" else None,
                series=tuple(view.series.get(metric, ())),
                stopped_early=view.stopped_early,
            )
        )
    state = (tuning.get("status") or {}).get("hyperParameterTuningJobStatus") or "not started"
    search = Search(
        metric=objective.metric_name,
        maximize=objective.type == "Maximize",
        parameters=parameters,
        title=f"TuningJob {name}: {config.strategy} search, {state}, {len(records)} trials",
    )
    return records, search


def _parameters(spec: Any) -> list[Parameter]:
    """The tuned hyperparameters: the config's ranges, or each training job definition's."""
    from kubemaker.builders import tuning as tb
    from kubemaker.planners.tuning_space import resolve_scale

    found: dict[str, Parameter] = {}
    for ranges in (d.ranges for d in tb.definitions(spec)):
        for integer, group in (
            (True, ranges.integer_parameter_ranges),
            (False, ranges.continuous_parameter_ranges),
        ):
            for r in group or ():
                try:
                    scale = resolve_scale(
                        r.scaling_type, float(r.min_value), float(r.max_value), integer=integer
                    )
                except ValueError:
                    scale = "Linear"
                found.setdefault(r.name, Parameter(r.name, log=scale == "Logarithmic"))
        for c in ranges.categorical_parameter_ranges or ():
            found.setdefault(c.name, Parameter(c.name, categories=tuple(c.values)))
    return list(found.values())


def load_dir(path: Path) -> tuple[list[TrialRecord], Search]:
    """What ``kubemaker local tune`` wrote: ``<dir>/tuning.json`` (or that file named)."""
    record = path if path.suffix == ".json" else path / TUNING_RECORD
    try:
        document = json.loads(record.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlotError(
            f"{record}: no such file (run `kubemaker local tune -f ...` first; --dir is "
            "<workdir>/<tuning job>)"
        ) from None
    except (OSError, ValueError) as exc:
        raise PlotError(f"{record}: cannot be read: {exc}") from None
    items = document.get("items") if isinstance(document, dict) else None
    tuning = next(
        (i for i in items or () if isinstance(i, dict) and i.get("kind") == "TuningJob"), None
    )
    if tuning is None:
        raise PlotError(f"{record}: holds no TuningJob")
    trials = [i for i in items or () if isinstance(i, dict) and i.get("kind") == "TrainingJob"]
    return records_from_objects(tuning, trials)


def load_cluster(
    name: str, namespace: str | None, kubeconfig: str | None, context: str | None
) -> tuple[list[TrialRecord], Search]:
    """The TuningJob and its trials (``kubemaker.io/tuning-job=NAME``) from the cluster."""
    import asyncio

    try:
        tuning, trials = asyncio.run(_read_cluster(name, namespace, kubeconfig, context))
    except ImportError as exc:
        raise PlotError(
            f"reading the cluster needs the operator's packages ({exc.name}): "
            "pip install 'kubemaker[operator,plot]'"
        ) from None
    return records_from_objects(tuning, trials)


async def _read_cluster(
    name: str, namespace: str | None, kubeconfig: str | None, context: str | None
) -> tuple[JSON, list[JSON]]:
    from kubernetes.config import ConfigException

    from kubemaker.api.common import GROUP, VERSION
    from kubemaker.builders.tuning import LABEL_TUNING_JOB
    from kubemaker.kube import ApiError, Kube, Resource

    try:
        kube = Kube.from_environment(kubeconfig=kubeconfig, context=context, max_workers=2)
    except (ConfigException, OSError) as exc:
        raise PlotError(f"no cluster to read: {exc}") from None
    namespace = namespace or _current_namespace(kubeconfig, context)
    try:
        tuning = await kube.get(Resource(GROUP, VERSION, "tuningjobs"), namespace, name)
        if tuning is None:
            raise PlotError(f"TuningJob {namespace}/{name} not found")
        listed = await kube.request(
            "GET",
            Resource(GROUP, VERSION, "trainingjobs").path(namespace),
            query={"labelSelector": f"{LABEL_TUNING_JOB}={name}"},
        )
    except ApiError as exc:
        raise PlotError(f"reading TuningJob {namespace}/{name}: {exc}") from None
    finally:
        kube.close()
    return tuning, list(listed.get("items") or [])


def _current_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The kubeconfig context's namespace, as kubectl defaults to it; else default."""
    import os

    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig or os.environ.get("KUBECONFIG") or None
        )
    except (config.ConfigException, OSError):
        return "default"
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


# --- the command ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="tuning_command", metavar="COMMAND", required=True)
    plot = commands.add_parser(
        "plot",
        help="draw a TuningJob's trials (objective, learning curves, hyperparameters) as a PNG",
        description=(
            "Draw a TuningJob's trials as a PNG: the objective per trial with the best so "
            "far, the trials' learning curves, and each tuned hyperparameter against the "
            "objective. NAME reads the TuningJob and its trials from the cluster; --dir "
            f"reads what `kubemaker local tune` wrote. Needs matplotlib: {INSTALL_HINT}."
        ),
    )
    plot.add_argument("name", nargs="?", help="the TuningJob on the cluster")
    plot.add_argument(
        "--dir", type=Path, help="a local tune's directory (<workdir>/<tuning job>), not NAME"
    )
    plot.add_argument("-n", "--namespace", help="its namespace (default: the context's)")
    plot.add_argument("--kubeconfig", help="kubeconfig (default $KUBECONFIG, else ~/.kube/config)")
    plot.add_argument("--context", help="kubeconfig context (default: the current one)")
    plot.add_argument("-o", "--output", type=Path, help="the PNG to write (default NAME.png)")


def run(args: argparse.Namespace) -> int:
    try:
        if (args.name is None) == (args.dir is None):
            raise PlotError("give a TuningJob's NAME (on the cluster) or --dir (a local tune)")
        if args.dir is not None:
            trials, search = load_dir(args.dir)
            name = (args.dir.parent if args.dir.suffix == ".json" else args.dir).resolve().name
        else:
            trials, search = load_cluster(args.name, args.namespace, args.kubeconfig, args.context)
            name = args.name
        if not trials:
            raise PlotError(f"TuningJob {name} has no trials to plot yet")
        out = args.output or Path(f"{name}.png")
        plot_trials(trials, out, search)
    except PlotError as exc:
        print(f"kubemaker tuning plot: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({len(trials)} trials)")
    return 0
