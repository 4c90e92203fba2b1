"""``spendgate proxy``: run the streaming proxy from a config file and/or flags."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click


def _overrides(
    listen: str | None,
    keys_file: Path | None,
    upstream: str | None,
    upstream_key_env: str | None,
    models: tuple[str, ...],
    otlp_endpoint: str | None,
    no_spans: bool,
    control: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if control:
        out["control"] = {"endpoint": control}
    if listen:
        out["listen"] = listen
    if keys_file:
        out["keys_file"] = str(keys_file)
    if upstream:
        provider: dict[str, Any] = {"base_url": upstream}
        if upstream_key_env:
            provider["api_key_env"] = upstream_key_env
        out["providers"] = {"default": provider}
        out["models"] = [{"name": m, "provider": "default"} for m in models]
    telemetry: dict[str, Any] = {}
    if otlp_endpoint:
        telemetry["endpoint"] = otlp_endpoint
    if no_spans:
        telemetry["exporter"] = "none"
    if telemetry:
        out["telemetry"] = telemetry
    return out


@click.command("proxy", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SPENDGATE_CONFIG",
    help="YAML config file (providers, models, telemetry).",
)
@click.option("--listen", metavar="HOST:PORT", help="Address to listen on [default: 127.0.0.1:8787].")
@click.option(
    "--keys-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Virtual-key directory [default: spendgate-data/keys.yaml].",
)
@click.option(
    "--upstream",
    metavar="URL",
    help="Quick setup without a config file: one OpenAI-compatible base URL (…/v1).",
)
@click.option("--upstream-key-env", metavar="VAR", help="Environment variable holding --upstream's API key.")
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME",
    help="With --upstream: a model name to serve (repeat for several).",
)
@click.option(
    "--otlp-endpoint",
    metavar="URL",
    help="Where spans go [default: OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317].",
)
@click.option("--no-spans", is_flag=True, help="Do not export spans (not recommended: no spend is recorded).")
@click.option(
    "--control",
    metavar="HOST:PORT|off",
    help="Collector control plane for keys and budgets [default: 127.0.0.1:4320]; off = standalone, no budgets.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
def proxy_command(
    config_path: Path | None,
    listen: str | None,
    keys_file: Path | None,
    upstream: str | None,
    upstream_key_env: str | None,
    models: tuple[str, ...],
    otlp_endpoint: str | None,
    no_spans: bool,
    control: str | None,
    verbose: bool,
) -> None:
    """Run the streaming proxy that Cursor and OpenAI-style clients point at.

    Clients authenticate with a virtual key (``spendgate keys create``); each call is forwarded to
    the configured provider as it streams and recorded as one OpenTelemetry span, exported over
    OTLP to the collector (or any OTLP backend). It subscribes to the collector's control plane
    (127.0.0.1:4320 unless configured) for keys and budget verdicts; --control off runs it without one.

    \b
    Example:
      spendgate proxy --upstream https://api.openai.com/v1 --upstream-key-env OPENAI_API_KEY \\
          --model gpt-4.1 --model gpt-4.1-mini
      spendgate proxy --config spendgate.yaml
    """
    from spendgate_proxy.config import ConfigError, load_config
    from spendgate_proxy.control.client import proxy_id_for
    from spendgate_proxy.server import install_uvloop, serve_until_stopped
    from spendgate_proxy.telemetry.spans import worker_from_settings

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if upstream and not models:
        raise click.UsageError("--upstream needs at least one --model NAME to serve")
    try:
        settings = load_config(
            config_path,
            overrides=_overrides(
                listen, keys_file, upstream, upstream_key_env, models, otlp_endpoint, no_spans, control
            ),
        )
        if not settings.models:
            raise ConfigError("no models configured: pass --config FILE, or --upstream URL with --model NAME")
        worker = worker_from_settings(settings.telemetry, proxy_id=proxy_id_for(settings.control))
    except (ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if not settings.keys_file.exists():
        click.echo(
            f"warning: key file {settings.keys_file} does not exist yet; every call gets 401 until "
            "you run `spendgate keys create`",
            err=True,
        )

    def ready(port: int) -> None:
        base = f"http://{settings.host}:{port}/v1"
        budgets = (
            "standalone: budgets NOT enforced"
            if settings.control.standalone
            else f"keys and budgets from the collector at {settings.control.endpoint}"
        )
        click.echo(
            f"spendgate proxy listening on {base} ({len(settings.models)} models, keys from {settings.keys_file}; "
            f"{budgets})",
            err=True,
        )

    install_uvloop()
    try:
        asyncio.run(serve_until_stopped(settings, worker, ready))
    except OSError as exc:
        click.echo(f"Error: cannot listen on {settings.listen}: {exc.strerror}", err=True)
        sys.exit(1)
