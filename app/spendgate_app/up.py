"""``spendgate up``: the whole gateway in one process on embedded defaults.

One asyncio loop runs the collector (OTLP receivers, pricing, SQLite store, query API), the proxy
(exporting its spans to that collector over OTLP/gRPC on loopback) and, when no provider key is
configured, the built-in simulated provider. ``--demo`` then sends sample traffic from three
developers in two teams and prints the month's spend, so the first report shows real rows.

Provider choice, first match wins: providers in ``--config``; ``OPENAI_API_KEY`` in the
environment (OpenAI with a default model list); otherwise the simulated provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

OPENAI_DEFAULT_MODELS = ("gpt-4.1", "gpt-4.1-mini", "gpt-5", "gpt-5-mini", "o4-mini")
SIMULATED_MODELS = ("gpt-4.1", "gpt-4.1-mini", "o4-mini", "claude-sonnet-4-5")
DEMO_MODEL, DEMO_SMALL_MODEL = "gpt-4.1", "gpt-4.1-mini"


def _provider_overrides(config_path: Path | None, sim_url: str | None) -> dict[str, Any]:
    """Proxy settings for the upstream when the config names none."""
    if sim_url is not None:
        return {
            "providers": {"simulated": {"base_url": sim_url}},
            "models": [{"name": m, "provider": "simulated"} for m in SIMULATED_MODELS],
        }
    return {
        "providers": {"openai": {"base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY"}},
        "models": [{"name": m, "provider": "openai"} for m in OPENAI_DEFAULT_MODELS],
    }


def _config_has_providers(config_path: Path | None) -> bool:
    if config_path is None:
        return False
    from spendgate_proxy.config import load_config

    return bool(load_config(config_path).providers)


async def _start_simulator(host: str, port: int) -> tuple[Any, str]:
    from aiohttp import web

    from spendgate_simulator import SimulatorConfig, create_app

    runner = web.AppRunner(create_app(SimulatorConfig(chunks=20, cached_ratio=0.3)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://{host}:{bound}/v1"


async def run_up(
    *,
    config_path: Path | None,
    data_dir: Path,
    proxy_listen: str | None,
    api_listen: str | None,
    otlp_grpc: str | None,
    otlp_http: str | None,
    control: str | None,
    simulator_port: int,
    demo: bool,
    exit_after_demo: bool,
    echo: Any = click.echo,
) -> int:
    """Start everything, optionally run the demo, serve until a signal; returns an exit code."""
    from spendgate_collector import Collector
    from spendgate_collector.config import load_config as load_collector_config
    from spendgate_proxy.config import load_config as load_proxy_config
    from spendgate_proxy.control.client import proxy_id_for
    from spendgate_proxy.server import start_proxy
    from spendgate_proxy.telemetry.spans import worker_from_settings

    data_dir.mkdir(parents=True, exist_ok=True)
    keys_file = data_dir / "keys.yaml"
    demo_keys = None
    if demo:  # before anything starts, so the proxy and collector see the keys from the first call
        from spendgate_app.demo import ensure_demo_keys

        demo_keys = ensure_demo_keys(keys_file)
    collector = Collector(
        load_collector_config(
            config_path,
            db=data_dir / "spendgate.db",
            keys_file=keys_file,
            otlp_grpc=otlp_grpc,
            otlp_http=otlp_http,
            api=api_listen,
            control=control,
        )
    )
    stack = contextlib.AsyncExitStack()
    try:
        await collector.start()
        stack.push_async_callback(collector.shutdown)

        sim_url = None
        if not _config_has_providers(config_path) and not os.environ.get("OPENAI_API_KEY"):
            sim_runner, sim_url = await _start_simulator("127.0.0.1", simulator_port)
            stack.push_async_callback(sim_runner.cleanup)

        overrides: dict[str, Any] = {"keys_file": str(keys_file)}
        if proxy_listen:
            overrides["listen"] = proxy_listen
        if not _config_has_providers(config_path):
            overrides.update(_provider_overrides(config_path, sim_url))
        overrides["telemetry"] = {"endpoint": f"http://{collector.otlp_grpc_endpoint}", "protocol": "grpc"}
        # Keys and budget verdicts stream from this collector; with its control plane off, the proxy
        # is standalone (and says that budgets are not enforced) rather than looking elsewhere.
        overrides["control"] = {"endpoint": collector.control_endpoint or "off"}
        settings = load_proxy_config(config_path, overrides=overrides)
        worker = worker_from_settings(settings.telemetry, proxy_id=proxy_id_for(settings.control))
        proxy_runner, proxy_port = await start_proxy(settings, worker=worker)
        stack.push_async_callback(proxy_runner.cleanup)  # cleanup flushes the span worker too
        base = f"http://{settings.host}:{proxy_port}/v1"

        upstream = f"simulated provider at {sim_url}" if sim_url else ", ".join(sorted(settings.providers))
        echo(
            f"spendgate is up:\n  proxy      {base}  (upstream: {upstream})\n"
            f"  collector  OTLP gRPC {collector.otlp_grpc_endpoint}, query API {collector.api_url}, "
            f"dashboard {collector.api_url}/\n"
            f"  data       {data_dir}/ (SQLite store, keys.yaml)"
        )

        if demo_keys is not None:
            await _demo(base, demo_keys, worker, collector, echo)
        _howto(base, keys_file, collector, echo)
        if exit_after_demo:
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        echo("stopping: finishing in-flight calls and flushing spans ...")
        return 0
    finally:
        await stack.aclose()


async def _demo(base: str, keys: dict[str, str], worker: Any, collector: Any, echo: Any) -> None:
    from spendgate_app.demo import DEVELOPERS, send_demo_traffic
    from spendgate_collector.attribution.coverage import format_table as format_coverage
    from spendgate_collector.query.report import DatabaseSource, format_table

    loop = asyncio.get_running_loop()
    echo(f"\ndemo: {len(DEVELOPERS)} developers in 2 teams send Cursor-shaped calls through the proxy ...")
    ok = await send_demo_traffic(base, keys, DEMO_MODEL, DEMO_SMALL_MODEL)
    # The exporter acknowledges only once the collector has committed, so after this flush the
    # calls are in the store and priced.
    flushed = worker is not None and await loop.run_in_executor(None, worker.force_flush, 15.0)
    echo(f"demo: {ok} calls answered; spans {'stored' if flushed else 'still in flight'}\n")
    month = datetime.now(UTC).strftime("%Y-%m")
    source = DatabaseSource(collector.config.db)
    try:
        rows = await loop.run_in_executor(None, source.spend, {"month": month, "group_by": "developer,team,repo"})
        coverage = await loop.run_in_executor(None, source.coverage, {"month": month, "group_by": "developer"})
    finally:
        source.close()
    echo(f"spend for {month} by developer, team and repo:\n")
    echo(format_table(rows, ["developer", "team", "repo"]))
    echo("\nhow each repo was learnt (Cursor sends none: hook, prompt workspace, model alias, key default):\n")
    echo(format_coverage(coverage))


def _command_name() -> str:
    """How the user can call us from their shell: ``spendgate`` when on PATH, else the script's path."""
    if shutil.which("spendgate"):
        return "spendgate"
    return os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0].endswith("spendgate") else "spendgate"


def _howto(base: str, keys_file: Path, collector: Any, echo: Any) -> None:
    month = datetime.now(UTC).strftime("%Y-%m")
    sg = _command_name()
    echo(f"""try it (in another terminal):
  KEY=$({sg} keys create --keys-file {keys_file} --user you@acme.com --team platform --repo acme-api)
  curl -N {base}/chat/completions -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\
       -d '{{"model": "gpt-4.1-mini", "stream": true, "messages": [{{"role": "user", "content": "hello"}}]}}'
  {sg} report --api {collector.api_url} --month {month} --by team,repo
  {sg} budgets set platform --team platform --limit 0.01 --api {collector.api_url}   # then watch the 402
  {sg} status --api {collector.api_url}
Cursor: base URL {base.removesuffix("/v1")}/cursor/v1 (behind public HTTPS), API key = the sg- key; see docs/cursor.md
Ctrl-C stops everything.""")


@click.command("up", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="SPENDGATE_CONFIG",
    help="YAML config (proxy, providers, models, telemetry, collector).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("spendgate-data"),
    show_default=True,
    help="Where the SQLite store and the key file live.",
)
@click.option("--proxy-listen", metavar="HOST:PORT", help="Proxy address [default: 127.0.0.1:8787].")
@click.option("--api-listen", metavar="HOST:PORT", help="Collector query API [default: 127.0.0.1:8788].")
@click.option("--otlp-grpc", metavar="HOST:PORT", help="OTLP/gRPC receiver [default: 127.0.0.1:4317].")
@click.option("--otlp-http", metavar="HOST:PORT", help="OTLP/HTTP receiver [default: 127.0.0.1:4318].")
@click.option("--control", metavar="HOST:PORT", help="Control plane for proxies [default: 127.0.0.1:4320].")
@click.option(
    "--simulator-port",
    type=int,
    default=8789,
    show_default=True,
    help="Port of the built-in simulated provider (used when no provider key is set).",
)
@click.option("--demo", is_flag=True, help="Send sample traffic from 3 developers and print the spend table.")
@click.option("--exit-after-demo", is_flag=True, help="Stop after the demo instead of serving (for scripts).")
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
def up_command(
    config_path: Path | None,
    data_dir: Path,
    proxy_listen: str | None,
    api_listen: str | None,
    otlp_grpc: str | None,
    otlp_http: str | None,
    control: str | None,
    simulator_port: int,
    demo: bool,
    exit_after_demo: bool,
    verbose: bool,
) -> None:
    """Run proxy + collector (+ a simulated provider) in one process on embedded defaults.

    With no provider configured and no OPENAI_API_KEY, the proxy talks to a built-in simulated
    provider, so everything works offline. Spend lands in SQLite under --data-dir.

    \b
    Example:
      spendgate up --demo                       # try it: sample traffic, then a spend table
      OPENAI_API_KEY=sk-... spendgate up        # real OpenAI behind the gateway
      spendgate up --config spendgate.yaml
    """
    from spendgate_proxy.config import ConfigError
    from spendgate_proxy.server import install_uvloop

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    install_uvloop()
    try:
        code = asyncio.run(
            run_up(
                config_path=config_path,
                data_dir=data_dir,
                proxy_listen=proxy_listen,
                api_listen=api_listen,
                otlp_grpc=otlp_grpc,
                otlp_http=otlp_http,
                control=control,
                simulator_port=simulator_port,
                demo=demo,
                exit_after_demo=exit_after_demo,
            )
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot start: {exc.strerror or exc} (is another spendgate running?)") from None
    except Exception as exc:
        from spendgate_collector.errors import CollectorError

        if isinstance(exc, CollectorError):
            raise click.ClickException(str(exc)) from None
        raise
    raise SystemExit(code)
