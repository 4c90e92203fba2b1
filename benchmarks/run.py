"""Entry point of ``make bench``: run the benchmark modules, print their reports, save every result as JSON.

A benchmark is any ``benchmarks/bench_<name>.py`` exposing ``main(quick: bool) -> dict`` (a
``main()`` without arguments is called without them, a ``main(argv)`` with ``--quick`` or
nothing). Its dict must be JSON-serialisable. A benchmark may print its own report; if it prints
nothing, the string under ``"report"`` is printed, or else the dict itself. All results
go to ``benchmarks/results/latest.json`` (git-ignored), also when one benchmark fails; the exit
status is 1 if any benchmark raised. Performance bars never change the exit status.

Examples:

    .venv/bin/python benchmarks/run.py                  # everything, full size (a few minutes)
    .venv/bin/python benchmarks/run.py --only proxy     # one benchmark (comma-separate several)
    .venv/bin/python benchmarks/run.py --quick          # a few hundred calls each: checks they run
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import inspect
import io
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "latest.json"


def discover() -> list[str]:
    """Names of the benchmark modules beside this file (``bench_proxy.py`` -> ``proxy``), sorted."""
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def call_main(main: Callable[..., Any], quick: bool) -> Any:
    """Call a benchmark's ``main`` the way its signature asks: ``quick`` by name (or ``**kwargs``),
    a command line when it takes ``argv`` (``["--quick"]`` or ``[]``), ``quick`` as the first
    positional parameter, or nothing at all."""
    params = inspect.signature(main).parameters
    if "quick" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return main(quick=quick)
    if "argv" in params:
        return main(["--quick"] if quick else [])
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind in positional or p.kind is inspect.Parameter.VAR_POSITIONAL for p in params.values()):
        return main(quick)
    return main()


class _Tee(io.TextIOBase):
    """Writes through to a stream and keeps a copy, to know whether a benchmark printed its own report."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.target.write(text)
        self.copy.write(text)
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def run_one(name: str, quick: bool) -> dict[str, Any]:
    """Import and run one benchmark, printing its report under a header.

    What the module prints itself is shown as it comes (and kept as its report when it returned
    none); otherwise its ``report`` text, or failing that the result as JSON, is printed after it
    returns. A failure becomes an ``error`` entry instead of an exception.
    """
    print(f"\n===== {name} =====", flush=True)
    started = time.monotonic()
    tee = _Tee(sys.stdout)
    try:
        module = importlib.import_module(f"bench_{name}")
        main = getattr(module, "main", None)
        if not callable(main):
            raise TypeError(f"benchmarks/bench_{name}.py has no main(quick) function")
        with contextlib.redirect_stdout(tee):
            result = call_main(main, quick)
        if not isinstance(result, dict):
            result = {"result": result}
    except Exception:  # one broken benchmark must not hide the others' numbers
        error = traceback.format_exc()
        print(f"FAILED:\n{error}", flush=True)
        return {"error": error, "elapsed_s": time.monotonic() - started}
    result.setdefault("elapsed_s", time.monotonic() - started)
    printed = tee.copy.getvalue()
    if printed.strip():
        result.setdefault("report", printed)
    elif isinstance(result.get("report"), str):
        print(result["report"], flush=True)
    else:
        print(json.dumps(result, indent=2, default=str), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    available = discover()
    parser = argparse.ArgumentParser(
        description="Run spendgate's benchmarks, print their reports and save the results as JSON.",
        epilog=f"benchmarks here: {', '.join(available) or 'none'}",
    )
    parser.add_argument("--only", metavar="NAMES", help="comma-separated subset, e.g. proxy,pricing")
    parser.add_argument("--quick", action="store_true", help="small runs that check the benchmarks work")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default: {DEFAULT_OUTPUT}")
    args = parser.parse_args(argv)

    names = available
    if args.only:
        names = [n.strip().removeprefix("bench_") for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in available]
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(unknown)} (available: {', '.join(available)})")
    # The modules import their helpers (_load, _otlp_sink) as top-level modules from this folder.
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))

    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "benchmarks": {},
    }
    failed = False
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        print(f"running {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        result = run_one(name, args.quick)
        failed = failed or "error" in result
        results["benchmarks"][name] = result
        # Written after every benchmark, so a later crash keeps the earlier numbers.
        args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if not names:
        args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults: {args.output}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
