"""Repo from the model alias: which custom model ids split into (repo, model) and which must not."""

from __future__ import annotations

import pytest

from spendgate_proxy.attribution.model_alias import split_model_alias

KNOWN = frozenset(
    {"claude-sonnet-4-6", "gpt-4.1", "gpt-4.1-mini", "anthropic/claude-opus-4-1", "openai/gpt-4.1", "acme/gpt-oss-120b"}
)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("acme-api/claude-sonnet-4-6", ("acme-api", "claude-sonnet-4-6")),
        ("acme-api/gpt-4.1-mini", ("acme-api", "gpt-4.1-mini")),
        ("Acme.Web_2/gpt-4.1", ("Acme.Web_2", "gpt-4.1")),
        # Cursor variants: recognised, passed through untouched for routing.
        ("acme-api/claude-sonnet-4-6-thinking", ("acme-api", "claude-sonnet-4-6-thinking")),
        ("acme-api/gpt-4.1-xhigh", ("acme-api", "gpt-4.1-xhigh")),
        ("acme-api/claude-sonnet-4-6-thinking-fast", ("acme-api", "claude-sonnet-4-6-thinking-fast")),
        # org/repo prefix; and a repo prefix in front of a provider-style configured model.
        ("globex/api/claude-sonnet-4-6", ("globex/api", "claude-sonnet-4-6")),
        ("acme-api/anthropic/claude-opus-4-1", ("acme-api", "anthropic/claude-opus-4-1")),
        # Provider-style ids that are themselves configured: never split.
        ("openai/gpt-4.1", None),
        ("anthropic/claude-opus-4-1", None),
        # Provider namespace in front of a bare configured model: not a repo.
        ("openai/gpt-4.1-mini", None),
        ("anthropic/claude-sonnet-4-6", None),
        ("openrouter/claude-sonnet-4-6", None),
        ("acme/gpt-oss-120b", None),  # configured as a model: "acme" is a model namespace
        # Unknown model after the slash, or no slash, or implausible prefixes.
        ("acme-api/claude-unknown", None),
        ("claude-sonnet-4-6", None),
        ("gpt-4.1-thinking", None),
        ("/claude-sonnet-4-6", None),
        ("acme api/claude-sonnet-4-6", None),
        ("-acme/claude-sonnet-4-6", None),
        ("a/b/c/claude-sonnet-4-6", None),
        ("acme-api/", None),
    ],
)
def test_split(model: str, expected: tuple[str, str] | None):
    assert split_model_alias(model, KNOWN) == expected


def test_plain_set_works_and_sees_changes():
    known = {"gpt-4.1"}
    assert split_model_alias("team-x/gpt-4.1", known) == ("team-x", "gpt-4.1")
    known.add("team-x/gpt-4.1-nano")  # now "team-x" is a model namespace
    assert split_model_alias("team-x/gpt-4.1", known) is None
