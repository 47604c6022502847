"""The ``kubemaker`` command line: one entry point, a subcommand per job.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int``. Only the chosen subcommand's module is imported, and those modules
keep heavy imports (kopf, boto3, an algorithm's packages) inside ``run``, so
``kubemaker crds`` never loads kopf and ``kubemaker local`` never loads the operator.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module, help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "operator": ("kubemaker.runner", "run the operator (the default with no subcommand)"),
    "crds": ("kubemaker.crd", "write the CRD YAML generated from the API models"),
    "local": ("kubemaker.local.cli", "train, tune or serve on this machine, no cluster needed"),
    "tuning": ("kubemaker.tuning_plot", "plot a TuningJob's trials (tuning plot)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(
        prog="kubemaker",
        description="The SageMaker workflow as Kubernetes custom resources.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        if name == command:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "operator")
    command = args_list[0] if args_list[0] in SUBCOMMANDS else None
    parser = build_parser(command)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    result: int = importlib.import_module(args._module).run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
