"""``docs/semconv.md`` is generated from ``attributes.py``; this fails when they drift."""

from __future__ import annotations

from pathlib import Path

from spendgate_semconv import attributes
from spendgate_semconv.docs import render, sections

DOC = Path(__file__).resolve().parents[2] / "docs" / "semconv.md"


def test_reference_page_is_up_to_date() -> None:
    assert DOC.read_text() == render(), "run `make docs` to regenerate docs/semconv.md"


def test_every_name_is_documented_once() -> None:
    entries = [e for _, group in sections() for e in group]
    assert all(e.meaning for e in entries), [e.constant for e in entries if not e.meaning]
    names = [getattr(attributes, e.constant) for e in entries if hasattr(attributes, e.constant)]
    assert len(names) == len(set(names))
    # The contract's required names are present (DESIGN.md, "Telemetry contract").
    for required in (
        "openinference.span.kind",
        "llm.token_count.prompt_details.cache_read",
        "llm.token_count.completion_details.reasoning",
        "gen_ai.provider.name",
        "gen_ai.usage.input_tokens",
        "vcs.repository.url.full",
        "vcs.ref.head.name",
        "spendgate.team",
        "spendgate.cost_center",
        "spendgate.feature",
        "spendgate.key.id",
        "spendgate.repo.source",
        "spendgate.cost.source",
        "spendgate.price.version",
    ):
        assert required in names
