"""One-liners that switch on the OpenInference instrumentors for the ``openai`` and ``anthropic`` clients.

spendgate does not instrument clients itself: OpenInference already does it well, and spendgate's
span processor attributes whatever spans it produces. These helpers only save the import and the
provider wiring, and turn a missing package into an error that names what to ``pip install``.
Neither the instrumentors nor the clients are spendgate dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any

from opentelemetry import trace


class MissingDependencyError(ImportError):
    """A package needed for the requested instrumentation is not installed; the message names it."""


def _require(module: str, package: str, purpose: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"{purpose} needs the '{package}' package: pip install {package}") from exc


def _instrument(
    client_module: str,
    client_package: str,
    instrumentor_module: str,
    instrumentor_class: str,
    instrumentor_package: str,
    tracer_provider: trace.TracerProvider | None,
    capture_content: bool,
    kwargs: dict[str, Any],
) -> Any:
    purpose = f"spendgate.instrument_{client_module}()"
    # Checked first: without the client, BaseInstrumentor only logs a conflict and instruments nothing.
    _require(client_module, client_package, purpose)
    module = _require(instrumentor_module, instrumentor_package, purpose)
    if not capture_content and "config" not in kwargs:
        # spendgate's rule: prompts and completions stay off spans unless switched on (docs/sdk.md).
        from openinference.instrumentation import TraceConfig

        kwargs["config"] = TraceConfig(hide_inputs=True, hide_outputs=True)
    instrumentor = getattr(module, instrumentor_class)()
    if instrumentor.is_instrumented_by_opentelemetry:
        return instrumentor  # instrumentors are singletons; a second instrument() only logs a warning
    if tracer_provider is None:
        from spendgate._setup import current_handle

        handle = current_handle()
        # The provider configure() set up, which may not be global (set_global=False, or taken).
        tracer_provider = handle.tracer_provider if handle is not None else None
    instrumentor.instrument(tracer_provider=tracer_provider, **kwargs)
    return instrumentor


def instrument_openai(
    tracer_provider: trace.TracerProvider | None = None, *, capture_content: bool = False, **kwargs: Any
) -> Any:
    """Enable OpenInference's instrumentor for the official ``openai`` client; returns the instrumentor.

    Spans go to ``tracer_provider``, else to the provider of the active ``spendgate.configure()``,
    else to the global one. Prompts and completions are kept off the spans (OpenInference's
    ``hide_inputs``/``hide_outputs``) unless ``capture_content=True`` or a ``config=TraceConfig(...)``
    of your own is passed; model, token counts and invocation parameters are always recorded. Other
    keyword arguments go to ``OpenAIInstrumentor().instrument``. Calling it twice is harmless; undo with
    ``.uninstrument()`` on the result. Raises ``MissingDependencyError`` naming
    ``openinference-instrumentation-openai`` (or ``openai``) when it is not installed.
    """
    return _instrument(
        "openai",
        "openai",
        "openinference.instrumentation.openai",
        "OpenAIInstrumentor",
        "openinference-instrumentation-openai",
        tracer_provider,
        capture_content,
        kwargs,
    )


def instrument_anthropic(
    tracer_provider: trace.TracerProvider | None = None, *, capture_content: bool = False, **kwargs: Any
) -> Any:
    """Enable OpenInference's instrumentor for the official ``anthropic`` client; returns the instrumentor.

    Same provider choice, content rule and keyword arguments as ``instrument_openai``. Raises
    ``MissingDependencyError`` naming ``openinference-instrumentation-anthropic`` (or ``anthropic``)
    when it is not installed.
    """
    return _instrument(
        "anthropic",
        "anthropic",
        "openinference.instrumentation.anthropic",
        "AnthropicInstrumentor",
        "openinference-instrumentation-anthropic",
        tracer_provider,
        capture_content,
        kwargs,
    )
