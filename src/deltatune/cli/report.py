"""Commands of the report (``workflow/rules/report.smk``): ``report``, and ``compare`` for two runs.

Neither imports torch: a report can be rebuilt on any machine that holds the results folder.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import _args


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "results_dir",
        nargs="?",
        metavar="RESULTS_DIR",
        help="rebuild the report of this results/<run> folder from the files it holds (no Snakemake needed)",
    )
    p.add_argument("--manifest", help="JSON: the run's files (deltatune.report.build.Manifest); the workflow's form")
    p.add_argument("--config", help="JSON: the run's effective config (WorkflowSettings.effective); with --manifest")
    p.add_argument("--out-dir", help="report folder to write; with --manifest")


def run_report(args: argparse.Namespace) -> None:
    from ..errors import SettingsError
    from ..report.build import Manifest, rebuild_report, report_files
    from ..settings import from_json

    given = [args.manifest, args.config, args.out_dir]
    if args.results_dir is not None:
        if any(given):
            raise SettingsError("give a RESULTS_DIR, or --manifest, --config and --out-dir: not both")
        summary = rebuild_report(args.results_dir)
    elif all(given):
        manifest = from_json(Manifest, args.manifest, "--manifest")
        try:
            config = json.loads(args.config)
        except json.JSONDecodeError as err:
            raise SettingsError(f"--config: not valid JSON ({err})") from err
        summary = report_files(manifest, args.out_dir, config=config)
    else:
        raise SettingsError("give a RESULTS_DIR to rebuild its report, or all of --manifest, --config and --out-dir")
    print(summary.to_string(index=False), file=sys.stderr)


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs=2, metavar="RESULTS", help="results/<run> folders (or their report/ folders)")
    p.add_argument("--out", default="comparison_of_runs.csv", help="CSV to write")
    p.add_argument(
        "--allow-different-tests",
        action="store_true",
        help="compare runs scored on different test perturbations (refused otherwise: not comparable)",
    )


def run_compare(args: argparse.Namespace) -> None:
    from ..report.compare import compare_files

    table = compare_files(args.runs[0], args.runs[1], out=args.out, allow_different_tests=args.allow_different_tests)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"written to {args.out}", file=sys.stderr)


def _config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="JSON: the run's effective config (WorkflowSettings.effective)")
    p.add_argument("--out", help="YAML file to write as well (default: print only)")


def run_config(args: argparse.Namespace) -> None:
    import yaml

    from ..errors import SettingsError
    from ..files import write_text

    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as err:
        raise SettingsError(f"--config: not valid JSON ({err})") from err
    text = yaml.safe_dump(config, sort_keys=False)
    if args.out:
        write_text(args.out, text)
    print(text, end="")


def register(sub) -> None:
    _args.add_command(sub, "report", "write the comparison report of a finished run", _report_arguments, run_report)
    _args.add_command(
        sub, "config", "print a run's effective config (defaults filled in)", _config_arguments, run_config
    )
    _args.add_command(sub, "compare", "side-by-side table of two runs' summary.csv", _compare_arguments, run_compare)
