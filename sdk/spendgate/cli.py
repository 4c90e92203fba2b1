"""The ``spendgate`` command: a thin click layer whose subcommands are imported only when run.

Subcommands live beside the code they drive (the proxy's in ``spendgate.proxy``, the collector's
in ``spendgate_collector``) and are named here as ``module:attribute`` strings, so ``spendgate
--help`` stays fast and a missing extra only fails the command that needs it, with a hint.
"""

from __future__ import annotations

import importlib
import sys

import click

# name -> (import path, one-line help shown by `spendgate --help`, extra that provides it)
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "up": ("spendgate.up:up_command", "Run proxy + collector (+ simulated provider) in one process.", "all"),
    "proxy": ("spendgate.proxy.cli:proxy_command", "Run the streaming proxy (data plane).", "proxy"),
    "keys": ("spendgate.proxy.keys_cli:keys_group", "Create, list and revoke virtual keys.", "proxy"),
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
        "collector",
    ),
    "status": (
        "spendgate_collector.query.status_cli:status_command",
        "Show budgets, spend, verdicts in force and connected proxies.",
        "collector",
    ),
    "cursor": (
        "spendgate.cursor.cli:cursor_group",
        "Cursor helpers: install the repo-attribution hooks in a repository.",
        "proxy",
    ),
    "simulate-provider": (
        "spendgate.simulator.cli:simulate_provider_command",
        "Run a simulated OpenAI-compatible provider for demos and tests.",
        "proxy",
    ),
}

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        target, help_text, extra = _COMMANDS[cmd_name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if ctx.resilient_parsing or ("--help" in sys.argv and cmd_name not in sys.argv):
                return click.Command(cmd_name, help=help_text, short_help=help_text)
            raise click.ClickException(
                f"'spendgate {cmd_name}' needs the '{extra}' extra ({exc}); "
                f"install it with: pip install 'spendgate[{extra}]'"
            ) from exc
        command = getattr(module, attr)
        command.short_help = help_text
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing help must not import every subcommand's dependencies.
        rows = [(name, _COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


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
