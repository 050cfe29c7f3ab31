"""The deltatune command line: one subcommand per workflow rule, one module per rules file.

Rules call these with ``shell:``; every setting arrives as a JSON object built from the config by
the workflow's ``params:``, so that a changed setting reruns exactly the steps it affects. Each
module keeps a command's arguments next to the function that runs it; library imports happen
inside that function, keeping start-up cost to what the step needs.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time

from ..errors import DeltatuneError, OutputError
from . import data, evaluate, pairing, predict, report, search, train

log = logging.getLogger("deltatune")
GROUPS = (data, pairing, train, search, predict, evaluate, report)  # in workflow order


def parser() -> argparse.ArgumentParser:
    """The ``deltatune`` parser with every command of :data:`GROUPS`."""
    from .. import __version__

    top = argparse.ArgumentParser(prog="deltatune", description=__doc__.splitlines()[0])
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = top.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return top


def peak_rss_mib() -> float:
    """The largest resident set of this process, or of any child it waited for, in MiB: exact,
    from the kernel (Snakemake's benchmark files sample memory, every 30 s after the first 15 s,
    so they can miss a short peak). ``ru_maxrss`` is in KiB on Linux and in bytes on macOS."""
    unit = 1 if sys.platform == "darwin" else 1024
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return peak * unit / 2**20


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s", stream=sys.stderr)
    started = time.perf_counter()
    try:
        args.func(args)
    except DeltatuneError as err:
        print(f"deltatune {args.command}: error: {err}", file=sys.stderr)
        if isinstance(err, OutputError):
            # HDF5 can crash while freeing a file that failed to write (a full disk) as Python
            # exits; the step has nothing left to do, so it leaves at once with its own status.
            sys.stderr.flush()
            os._exit(2)
        return 2
    log.info("%s finished in %.1f s, peak RSS %.0f MiB", args.command, time.perf_counter() - started, peak_rss_mib())
    return 0
