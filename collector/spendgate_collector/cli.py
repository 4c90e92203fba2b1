"""``spendgate collector`` and ``spendgate report``: thin click commands over ``Collector`` and ``report``.

Both are registered lazily in ``spendgate_app.cli``. Errors print one ``Error: ...`` line and exit 1.
Both need the ``collector`` extra; only click, the standard library and light modules are imported
here, so ``--help`` works without it (the rest is imported in the callbacks).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from . import env
from .env import DEFAULT_DB
from .errors import CollectorError, QueryError
from .query import DIMENSIONS, current_month

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# Query parameter → the option that sets it, for error messages.
_OPTION_FOR_PARAM = {"group_by": "--by", "from": "--from", "to": "--to", "month": "--month"}


def _fail(exc: Exception) -> click.ClickException:
    if isinstance(exc, QueryError):
        option = _OPTION_FOR_PARAM.get(exc.param, "--" + exc.param.replace("_", "-"))
        return click.ClickException(f"{option}: {exc.message}")
    return click.ClickException(str(exc))


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--db", type=click.Path(dir_okay=False), help=f"SQLite database file. [default: {DEFAULT_DB}]")
@click.option("--otlp-grpc", metavar="HOST:PORT", help="OTLP/gRPC receiver, or 'off'. [default: 127.0.0.1:4317]")
@click.option("--otlp-http", metavar="HOST:PORT", help="OTLP/HTTP receiver, or 'off'. [default: 127.0.0.1:4318]")
@click.option("--api", metavar="HOST:PORT", help="Query API and /metrics, or 'off'. [default: 127.0.0.1:8788]")
@click.option(
    "--control",
    metavar="HOST:PORT",
    help="Control plane for proxies (keys, verdicts), or 'off'. [default: 127.0.0.1:4320]",
)
@click.option("--keys-file", type=click.Path(dir_okay=False), help="Keys YAML from 'spendgate keys'.")
@click.option("--prices", type=click.Path(dir_okay=False), help="Price overrides YAML.")
@click.option("--retention-days", type=int, help="Days raw rows are kept (0 = forever). [default: 90]")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def collector_command(config_path: str | None, log_level: str, **options: Any) -> None:
    """Receive OTLP spans, price every LLM call, keep chargeback rollups, answer queries.

    Listens for OTLP on gRPC and HTTP (protobuf or JSON), stores one row per LLM span in SQLite
    (idempotent per span), and serves /api/* (JSON, CSV), /healthz and /metrics. Runs until
    SIGINT/SIGTERM, then stores what it has acknowledged and exits. Every option can also be set
    with SPENDGATE_COLLECTOR_<OPTION> or in the --config file.

    \b
    Example:
      spendgate collector --db ./spendgate-data/spendgate.db --keys-file keys.yaml
      spendgate report --month 2026-11 --by team
    """
    from .config import load_config

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        config = load_config(config_path, **options)
    except CollectorError as exc:
        raise _fail(exc) from None
    try:
        asyncio.run(_serve(config))
    except CollectorError as exc:
        raise _fail(exc) from None


async def _serve(config: Any) -> None:
    from .app import Collector

    collector = Collector(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await collector.start()
        click.echo(
            f"spendgate collector: otlp-grpc {collector.otlp_grpc_endpoint or 'off'}, "
            f"otlp-http {collector.otlp_http_url or 'off'}, api {collector.api_url or 'off'}, db {config.db}",
            err=True,
        )
        await stop.wait()
        click.echo("spendgate collector: stopping (storing what was acknowledged)...", err=True)
    finally:
        await collector.shutdown()


def _filter_options(func: Any) -> Any:
    for name in reversed(DIMENSIONS):
        func = click.option(f"--{name.replace('_', '-')}", name, metavar="VALUE", help=f"Only this {name}.")(func)
    return func


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--month", metavar="YYYY-MM", help="Calendar month (UTC). [default: this month]")
@click.option("--from", "from_", metavar="YYYY-MM-DD", help="First day (UTC), instead of --month.")
@click.option("--to", metavar="YYYY-MM-DD", help="Last day (UTC, inclusive), instead of --month.")
@click.option("--by", "by", metavar="DIM[,DIM...]", help="Group by: day, month, " + ", ".join(DIMENSIONS) + ".")
@click.option("--chargeback", is_flag=True, help="The chargeback table: developer, team, cost centre, repo.")
@click.option(
    "--coverage",
    is_flag=True,
    help="Share of spend with a repo, by attribution source (--by developer/team/cost_center).",
)
@click.option(
    "--reconcile",
    is_flag=True,
    help="Per developer and UTC hour: gateway calls against Cursor's BYOK requests; lists the gaps.",
)
@click.option(
    "--min-gap",
    type=click.IntRange(min=1),
    metavar="N",
    help="With --reconcile: smallest request difference reported. [default: 3]",
)
@click.option("--csv", "as_csv", is_flag=True, help="Write CSV (with a header line).")
@click.option("--json", "as_json", is_flag=True, help="Write JSON.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), help="Write to FILE, not stdout.")
@click.option("--db", type=click.Path(dir_okay=False), help=f"Read this database file. [default: {DEFAULT_DB}]")
@click.option("--api", "api_url", metavar="URL", help="Read a running collector's API, e.g. http://127.0.0.1:8788.")
@_filter_options
def report_command(  # noqa: C901 -- collector regroup brings it under 20
    month: str | None,
    from_: str | None,
    to: str | None,
    by: str | None,
    chargeback: bool,
    coverage: bool,
    reconcile: bool,
    min_gap: int | None,
    as_csv: bool,
    as_json: bool,
    output: str | None,
    db: str | None,
    api_url: str | None,
    **filters: str | None,
) -> None:
    """Print spend grouped by any dimension, or the monthly chargeback table.

    Prints a readable table by default; --csv and --json give machine-readable output with every
    measure. Costs are USD; 'unpriced' counts calls whose model has no known price (their cost is
    not included, never counted as zero).

    \b
    Example:
      spendgate report --month 2026-11 --by team,repo
      spendgate report --month 2026-11 --chargeback --csv -o chargeback-2026-11.csv
      spendgate report --month 2026-11 --coverage --by team
      spendgate report --from 2026-11-20 --to 2026-11-27 --reconcile --min-gap 5
    """
    from . import report

    if as_csv and as_json:
        raise click.ClickException("--csv and --json: choose one")
    if sum((chargeback, coverage, reconcile)) > 1:
        raise click.ClickException("--chargeback, --coverage and --reconcile: choose one")
    if reconcile and by:
        raise click.ClickException("--by: --reconcile is always per developer and hour")
    if min_gap is not None and not reconcile:
        raise click.ClickException("--min-gap: only with --reconcile")
    if chargeback and (by or from_ or to):
        raise click.ClickException("--chargeback: it is per month; use --month, not --by/--from/--to")
    if db and api_url:
        raise click.ClickException("--db and --api: choose one source")
    params: dict[str, str] = {k: v for k, v in filters.items() if v}
    if from_ or to:
        if month:
            raise click.ClickException("--month: give either --month or --from/--to")
        params.update({k: v for k, v in (("from", from_), ("to", to)) if v})
    else:
        params["month"] = month or current_month()
    if by:
        params["group_by"] = by
    if min_gap is not None:
        params["min_gap"] = str(min_gap)

    try:
        if api_url:
            source: report.ReportSource = report.ApiSource(api_url)
        else:
            source = report.DatabaseSource(db or os.environ.get(env.SPENDGATE_COLLECTOR_DB) or DEFAULT_DB)
        try:
            if coverage:
                text = _coverage_text(source.coverage(params), as_csv, as_json)
            elif reconcile:
                text = _reconcile_text(source.reconcile(params), as_csv, as_json)
            elif chargeback:
                rows = source.chargeback(params)
                if as_csv:
                    text = report.chargeback_csv(params["month"], rows)
                elif as_json:
                    text = report.to_json({"month": params["month"], "rows": rows, "totals": report.totals(rows)})
                else:
                    text = report.format_table(rows, report.CHARGEBACK_COLUMNS[1:5])
            else:
                from .query import MEASURES, parse_group_by

                group_by = parse_group_by(params.get("group_by"))
                rows = source.spend(params)
                if as_csv:
                    text = report.rows_csv(rows, [*group_by, *MEASURES])
                elif as_json:
                    period = {k: params[k] for k in ("month", "from", "to") if k in params}
                    text = report.to_json(
                        {**period, "group_by": list(group_by), "rows": rows, "totals": report.totals(rows)}
                    )
                else:
                    text = report.format_table(rows, group_by)
        finally:
            source.close()
    except CollectorError as exc:
        raise _fail(exc) from None

    if output and output != "-":
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def _coverage_text(body: dict[str, Any], as_csv: bool, as_json: bool) -> str:
    from . import coverage, report

    if as_csv:
        return report.rows_csv(body["rows"], [*body["group_by"], *coverage.COLUMNS])
    if as_json:
        return report.to_json(body)
    return f"Coverage {body['from'] or '...'} .. {body['to'] or '...'} (UTC)\n\n" + coverage.format_table(body)


def _reconcile_text(body: dict[str, Any], as_csv: bool, as_json: bool) -> str:
    from . import reconcile, report

    if as_csv:
        return report.rows_csv(body["gaps"], reconcile.COLUMNS)
    if as_json:
        return report.to_json(body)
    return reconcile.format_table(body)
