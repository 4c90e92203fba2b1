"""The ``spendgate`` command: a thin click layer whose subcommands are imported only when run.

Subcommands live beside the code they drive (the proxy's in ``spendgate_proxy``, the collector's
in ``spendgate_collector``) and are named here as ``module:attribute`` strings, so ``spendgate
--help`` stays fast and a missing extra only fails the command that needs it, with a hint.

A plain ``pip install spendgate`` (no extras) must show every command's ``--help`` and run every
command that needs no server (``keys``, ``budgets``, ``status``, ``cursor``). So a command's module
imports only click, the standard library and light project modules at its top, and imports its
server stack inside the callback. When that import fails, ``LazyGroup`` prints one line naming the
extra to install (``missing_extra``) and exits 1, never a traceback. ``tests/test_no_extras.py``
runs every command without what a base install lacks; ``tests/test_base_install.py`` in a real one.
"""

from __future__ import annotations

import importlib

import click

# name -> (import path, one-line help shown by `spendgate --help`, extra it needs to run or None)
_COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "up": ("spendgate_app.up:up_command", "Run proxy + collector (+ simulated provider) in one process.", "all"),
    "proxy": ("spendgate_proxy.cli:proxy_command", "Run the streaming proxy (data plane).", "proxy"),
    "keys": ("spendgate_proxy.keys_cli:keys_group", "Create, list and revoke virtual keys.", None),
    "collector": (
        "spendgate_collector.cli:collector_command",
        "Run the collector: OTLP receivers, pricing, storage, query API.",
        "collector",
    ),
    "report": (
        "spendgate_collector.cli:report_command",
        "Print spend and chargeback tables from the collector's store.",
        "collector",
    ),
    "budgets": (
        "spendgate_collector.budgets.cli:budgets_group",
        "Set, list, override and remove budgets on a running collector.",
        None,
    ),
    "status": (
        "spendgate_collector.query.status_cli:status_command",
        "Show budgets, spend, verdicts in force and connected proxies.",
        None,
    ),
    "cursor": (
        "spendgate_proxy.cursor.cli:cursor_group",
        "Cursor helpers: install the repo-attribution hooks in a repository.",
        None,
    ),
    "simulate-provider": (
        "spendgate_simulator.cli:simulate_provider_command",
        "Run a simulated OpenAI-compatible provider for demos and tests.",
        "proxy",
    ),
}

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def missing_extra(cmd_name: str | None, exc: ModuleNotFoundError) -> click.ClickException | None:
    """The one-line error for a command run without the extra it needs; None when that is not the cause.

    Only a third-party module missing under a command that names an extra qualifies: a missing
    ``spendgate*`` module is a bug, and a command that needs no extra must not fail this way.
    """
    extra = _COMMANDS[cmd_name][2] if cmd_name in _COMMANDS else None
    module = (exc.name or "").partition(".")[0]
    if extra is None or not module or module.startswith("spendgate"):
        return None
    return click.ClickException(
        f"'spendgate {cmd_name}' needs the '{extra}' extra: pip install 'spendgate[{extra}]' (missing module {module})"
    )


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand is asked for.

    Command modules import their server stack inside the callback, so loading one for ``--help``
    needs no extra; a run that hits a missing extra ends in ``missing_extra``'s one line.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        target, help_text, _ = _COMMANDS[cmd_name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Command modules should import without extras; should one not, still say which extra.
            if ctx.resilient_parsing:  # shell completion: never fail
                return click.Command(cmd_name, help=help_text, short_help=help_text)
            error = missing_extra(cmd_name, exc)
            if error is None:
                raise
            raise error from None
        command = getattr(module, attr)
        command.short_help = help_text
        return command

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            error = missing_extra(ctx.invoked_subcommand, exc)
            if error is None:
                raise
            raise error from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing help must not import every subcommand's dependencies.
        rows = [(name, _COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        by_extra: dict[str, list[str]] = {}
        for name in self.list_commands(ctx):
            by_extra.setdefault(_COMMANDS[name][2] or "", []).append(name)
        rows = [(extra, ", ".join(names)) for extra, names in sorted(by_extra.items()) if extra]
        rows.append(("none", ", ".join(by_extra.get("", [])) + ", and every --help"))
        with formatter.section("Extras (pip install 'spendgate[EXTRA]')"):
            formatter.write_dl(rows)
        super().format_epilog(ctx, formatter)


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="spendgate")
def cli() -> None:
    """spendgate: see and steer what AI coding costs.

    Point Cursor (or any OpenAI/Anthropic-style client) at the proxy with a per-developer virtual
    key; every call becomes an attributed OpenTelemetry span that the collector prices and rolls up
    into chargeback by developer, team, cost centre and repo.

    \b
    Quick start:
      spendgate up --demo              # everything on embedded defaults, sample traffic
      spendgate keys create --user dev@acme.com --team platform
      spendgate report --month 2026-11 --by team
    """


def main() -> None:
    """Console-script entry point."""
    cli()
