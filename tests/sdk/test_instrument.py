"""spendgate.instrument_openai / instrument_anthropic: the one-liners and their missing-package errors."""

from __future__ import annotations

import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider

import spendgate


@pytest.mark.parametrize(
    ("helper", "module", "package"),
    [
        ("instrument_openai", "openinference.instrumentation.openai", "openinference-instrumentation-openai"),
        ("instrument_anthropic", "openinference.instrumentation.anthropic", "openinference-instrumentation-anthropic"),
        ("instrument_openai", "openai", "openai"),
        ("instrument_anthropic", "anthropic", "anthropic"),
    ],
)
def test_missing_package_is_named(monkeypatch: pytest.MonkeyPatch, helper: str, module: str, package: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail as if not installed
    with pytest.raises(spendgate.MissingDependencyError, match=f"pip install {package}$"):
        getattr(spendgate, helper)()
    assert issubclass(spendgate.MissingDependencyError, ImportError)


def test_instrument_anthropic_uses_the_configured_provider() -> None:
    pytest.importorskip("openinference.instrumentation.anthropic")
    provider = TracerProvider()
    handle = spendgate.configure(tracer_provider=provider)
    instrumentor = spendgate.instrument_anthropic()
    try:
        assert instrumentor.is_instrumented_by_opentelemetry
        assert spendgate.instrument_anthropic() is instrumentor  # a second call changes nothing
    finally:
        instrumentor.uninstrument()
        handle.shutdown()
