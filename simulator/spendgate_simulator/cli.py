"""``spendgate simulate-provider``: serve the simulated OpenAI-compatible provider from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable

import click

from spendgate_simulator.config import SimulatorConfig


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    # uvloop roughly halves the per-request CPU of the benchmark baseline; it is optional.
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(config: SimulatorConfig, host: str, port: int) -> None:
    from aiohttp import web

    from spendgate_simulator.app import create_app

    # No access log: on the benchmark path it would cost more CPU than answering.
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        click.echo(
            f"spendgate simulate-provider listening on http://{shown}:{bound_port}/v1 (Ctrl-C to stop)",
            err=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # SIGTERM (from a test or a supervisor) stops as cleanly as Ctrl-C.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8789, show_default=True, type=int, help="Port to listen on (0 picks a free one).")
@click.option("--chunks", default=20, show_default=True, type=click.IntRange(min=1), help="Content deltas per answer.")
@click.option(
    "--ttft-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Wait before the first event.",
)
@click.option(
    "--chunk-delay-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Wait between events.",
)
@click.option(
    "--api-key",
    envvar="SPENDGATE_SIM_API_KEY",
    show_envvar=True,
    default=None,
    help="Require 'Authorization: Bearer KEY' (default: accept any key).",
)
@click.option(
    "--cached-ratio",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of prompt tokens reported as cached.",
)
@click.option(
    "--error-rate-429",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of completion requests answered with a 429.",
)
@click.option(
    "--error-rate-500",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of completion requests answered with a 500.",
)
@click.option("--seed", default=None, type=int, help="Seed for the random faults, for reproducible runs.")
def simulate_provider_command(
    host: str,
    port: int,
    chunks: int,
    ttft_ms: float,
    chunk_delay_ms: float,
    api_key: str | None,
    cached_ratio: float,
    error_rate_429: float,
    error_rate_500: float,
    seed: int | None,
) -> None:
    """Serve a simulated OpenAI-compatible provider (Chat Completions, streaming or not).

    Answers depend only on the request body, so the same request always gets the same bytes.
    Markers in the last user message inject faults: [[sim:429]], [[sim:500]],
    [[sim:context-overflow]], [[sim:drop-after=N]], [[sim:slow=MS]]. GET /_sim/requests shows
    what was received. See docs/simulator.md.

    \b
    Example:
      spendgate simulate-provider --port 8789 --ttft-ms 300 --chunk-delay-ms 20
      curl -s localhost:8789/v1/chat/completions -H 'content-type: application/json' \\
        -d '{"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}'
    """
    try:
        config = SimulatorConfig(
            chunks=chunks,
            ttft_ms=ttft_ms,
            chunk_delay_ms=chunk_delay_ms,
            api_key=api_key or None,
            cached_ratio=cached_ratio,
            error_rate_429=error_rate_429,
            error_rate_500=error_rate_500,
            seed=seed,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(config, host, port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # typically the port is taken
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    click.echo("spendgate simulate-provider stopped", err=True)
    sys.stderr.flush()
