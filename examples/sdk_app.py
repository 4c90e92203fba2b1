"""An application instrumented with the spendgate SDK: the official ``openai`` client through OpenInference.

Run it as is: it starts spendgate's simulated OpenAI-compatible provider in this process (needs the
``proxy`` extra for aiohttp) and prints one JSON line per LLM span with its attribution::

    python examples/sdk_app.py

Point it at a real provider or gateway with the ``openai`` client's own variables, and send spans to
a spendgate collector (or any OTLP endpoint) with the standard OpenTelemetry ones::

    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \\
    OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 python examples/sdk_app.py

Without ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) spans go to a
console exporter on stdout instead of an OTLP collector that probably is not running. ``MODEL``
picks the model (default ``gpt-4.1-mini``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import openai
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

import spendgate

MODEL = os.environ.get("MODEL", "gpt-4.1-mini")
SHOWN = ("user.id", "vcs.repository.name", "vcs.ref.head.name", "spendgate.team", "spendgate.cost_center")
SHOWN += ("spendgate.feature", "tag.tags", "llm.model_name", "llm.token_count.prompt", "llm.token_count.completion")


def one_line(span: ReadableSpan) -> str:
    """Console format: the span's name and the attributes spendgate cares about, one JSON line."""
    attrs = span.attributes or {}
    shown = {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items() if k in SHOWN}
    return json.dumps({"span": span.name, **shown}) + "\n"


@contextlib.contextmanager
def simulated_provider() -> Iterator[str]:
    """Serve spendgate's simulated provider on a free loopback port in a thread; yields its base URL."""
    from aiohttp import web

    from spendgate_simulator import SimulatorConfig, create_app

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(create_app(SimulatorConfig(chunks=5)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"], state["port"] = runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def run() -> None:
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{state['port']}/v1"
    finally:
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def ask(client: openai.OpenAI, question: str) -> str:
    response = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}])
    return response.choices[0].message.content or ""


@spendgate.attribute(feature="summarise")
def summarise(client: openai.OpenAI, text: str) -> str:
    """A decorated function: every LLM call inside is a ``summarise`` call, whoever asked for it."""
    return ask(client, f"Summarise: {text}")


async def answer_many(users: list[str]) -> None:
    """Concurrent asyncio tasks, each charged to its own developer."""
    client = openai.AsyncOpenAI()

    async def one(user: str) -> None:
        async with spendgate.attribute(user=user, feature="chat"):
            await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}])

    async with client:
        await asyncio.gather(*(one(u) for u in users))


def main() -> int:
    exporting = any(os.environ.get(v) for v in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    # 1. Once at start-up: who this service charges to by default, and where spans go.
    handle = spendgate.configure(
        service_name="sdk-example",
        team="search",
        cost_center="cc-4711",
        repo="acme-rag",
        exporter=None if exporting else ConsoleSpanExporter(formatter=one_line),
    )
    # 2. Let OpenInference instrument the official client; spendgate attributes its spans.
    spendgate.instrument_openai()

    with contextlib.ExitStack() as stack:
        if not os.environ.get("OPENAI_BASE_URL"):
            os.environ["OPENAI_BASE_URL"] = stack.enter_context(simulated_provider())
            os.environ.setdefault("OPENAI_API_KEY", "sk-simulated")
        client = openai.OpenAI()

        # 3. Per request: who asked and what for. Inner blocks override outer ones field by field.
        with spendgate.attribute(user="ana@acme.com", feature="rag", branch="main", tags=["example"]):
            ask(client, "Which of our services spends the most on LLM calls?")
            with spendgate.attribute(user="bob@acme.com"):
                summarise(client, "A long design document about budgets.")
        asyncio.run(answer_many(["carol@acme.com", "dan@acme.com"]))

    # 4. At exit spans are flushed anyway; shutting down explicitly makes the stats final.
    handle.shutdown()
    print(f"spendgate: {handle.stats()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
