"""Run the ``spendgate`` CLI as a plain ``pip install spendgate`` has it: nothing else can be imported.

A meta path finder refuses every top-level module of this venv that a base install lacks (the
packages ``uv.lock`` installs without extras, mapped to module names through this venv's
distributions): the server extras' (aiohttp, pydantic, sqlite_utils, httpx, ...) and the dev
extra's (pytest, packaging, openai, ...). So the test venv stands in for a minimal one without
building it. ``grpc`` is refused too although a base install has it (the SDK's OTLP exporter needs
it): no command that needs no extra should lean on the gRPC stack.

In a subprocess, with the refused names in ``$SPENDGATE_TEST_BLOCKED`` (comma-separated)::

    python -m tests.support.no_extras tree       # JSON: every command, {"path": ["budgets", "list"], ...}
    python -m tests.support.no_extras run        # stdin: JSON list of argv lists; stdout: JSON results
    python -m tests.support.no_extras cli ARGS   # the console script itself, as a user would run it

``run`` invokes each argv in this one process with click's test runner (one process start for the
whole list); a result is ``{"argv", "exit_code", "output", "exception"}``, where ``exception`` is
the traceback of anything other than a clean exit. Without ``$SPENDGATE_TEST_BLOCKED`` nothing is
refused: ``tests/test_base_install.py`` runs the same commands in a real base-only venv.
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import json
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from typing import Any

BLOCKED_ENV = "SPENDGATE_TEST_BLOCKED"
ALSO_BLOCKED = ("grpc",)
INSTALL_TOOLS = ("pip", "setuptools", "wheel")  # in many a venv; setuptools' .pth imports at start-up


def blocked_modules() -> list[str]:
    """Top-level modules a base install lacks (every installed package outside it), plus ``ALSO_BLOCKED``."""
    from packaging.utils import canonicalize_name

    from tests.support.lockfile import PROJECT, installed_with

    allowed = installed_with() | {PROJECT, *INSTALL_TOOLS}
    blocked = set(ALSO_BLOCKED)
    for module, dists in importlib.metadata.packages_distributions().items():
        if module.isidentifier() and not any(canonicalize_name(d) in allowed for d in dists):
            blocked.add(module)
    return sorted(blocked)


class _Refuse(importlib.abc.MetaPathFinder):
    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked: no extras)", name=fullname)
        return None


def install(names: Iterable[str]) -> None:
    """Refuse ``names`` from now on; fails when one is imported already (the block would be a lie)."""
    names = list(names)
    early = sorted(m for m in sys.modules if m.partition(".")[0] in names)
    if early:
        raise RuntimeError(f"imported before the block was installed: {early}")
    sys.meta_path.insert(0, _Refuse(names))


def command_paths() -> list[dict[str, Any]]:
    """Every command and subcommand below ``spendgate``: ``{"path": argv prefix, "group": bool}``."""
    import click

    from spendgate_app.cli import cli

    found: list[dict[str, Any]] = []

    def walk(group: click.Group, ctx: click.Context, prefix: list[str]) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, [*prefix, name]
            is_group = isinstance(command, click.Group)
            found.append({"path": [*prefix, name], "group": is_group})
            if is_group:
                walk(command, click.Context(command, parent=ctx, info_name=name), [*prefix, name])

    walk(cli, click.Context(cli, info_name="spendgate"), [])
    return found


def run(argvs: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """Each argv through ``spendgate``'s group, in this process, as click's runner sees it."""
    from click.testing import CliRunner

    from spendgate_app.cli import cli

    results = []
    for argv in argvs:
        result = CliRunner().invoke(cli, list(argv), prog_name="spendgate")
        exc = result.exception
        clean = exc is None or isinstance(exc, SystemExit)
        results.append(
            {
                "argv": list(argv),
                "exit_code": result.exit_code,
                "output": result.output,
                "exception": None if clean else "".join(traceback.format_exception(*result.exc_info)),
            }
        )
    return results


def main(argv: list[str]) -> int:
    install(n for n in os.environ.get(BLOCKED_ENV, "").split(",") if n)
    if argv[:1] == ["tree"]:
        print(json.dumps(command_paths()))
        return 0
    if argv[:1] == ["run"]:
        print(json.dumps(run(json.load(sys.stdin))))
        return 0
    if argv[:1] == ["cli"]:
        from spendgate_app.cli import cli

        return cli.main(argv[1:], prog_name="spendgate")
    print("usage: python -m tests.support.no_extras tree | run | cli ARGS...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
