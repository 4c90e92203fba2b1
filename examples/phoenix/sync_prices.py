"""Push spendgate's per-token rates to Arize Phoenix, so Phoenix's cost columns agree with the chargeback.

Phoenix prices LLM spans itself, from its own model table, when it ingests them; it ignores the
``llm.cost.*`` attributes the collector adds. Phoenix lets you add models with your own prices
(user-defined models win over its built-in ones). This script asks the collector's ``Pricer`` what
it charges per million tokens for each model (list price from genai-prices, or your overrides and
discounts from ``prices.yaml``) and creates or updates one Phoenix model per name, called
``spendgate:<model>``, matching that exact model name.

    .venv/bin/python examples/phoenix/sync_prices.py --phoenix http://127.0.0.1:6006 \\
        --prices prices.yaml --collector-api http://127.0.0.1:8788      # models seen in 90 days
    .venv/bin/python examples/phoenix/sync_prices.py --phoenix ... --model gpt-4.1 --model anthropic/claude-sonnet-4-5

Limits: Phoenix applies a price to spans ingested *after* it learnt it (it re-reads its model table
every 5 s), and it has one rate per token type, so tiered prices (a higher rate above 200k prompt
tokens) and per-request fees cannot be mirrored; spendgate's numbers remain the chargeback.
Run it after every change of ``prices.yaml`` or of the genai-prices version (e.g. at deploy).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from spendgate_collector.pricing import Pricer, TokenUsage, load_price_overrides

MTOK = 1_000_000
NAME_PREFIX = "spendgate:"


def rates(pricer: Pricer, provider: str | None, model: str, at: datetime) -> dict[str, float] | None:
    """USD per million tokens by Phoenix token type, as spendgate prices them; ``None`` when unpriced."""

    def part(usage: TokenUsage, field: str) -> float | None:
        value = getattr(pricer.price(provider, model, usage, at), field)
        return None if value is None else round(value, 10)

    input_rate = part(TokenUsage(MTOK), "input_usd")
    if input_rate is None:
        return None
    output_rate = part(TokenUsage(0, MTOK), "output_usd") or 0.0
    return {
        "input": input_rate,
        "output": output_rate,
        "cache_read": part(TokenUsage(MTOK, 0, cache_read_tokens=MTOK), "input_usd") or 0.0,
        "cache_write": part(TokenUsage(MTOK, 0, cache_write_tokens=MTOK), "input_usd") or 0.0,
        "reasoning": part(TokenUsage(0, MTOK, reasoning_tokens=MTOK), "output_usd") or output_rate,
    }


_PROMPT_TYPES = {"input", "cache_read", "cache_write"}


def _graphql(
    phoenix: str, query: str, variables: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Any:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{phoenix.rstrip('/')}/graphql", body, {"Content-Type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise RuntimeError(f"Phoenix GraphQL error: {answer['errors'][0].get('message')}")
    return answer["data"]


def existing_models(phoenix: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """Phoenix's user-defined models: name → id."""
    data = _graphql(phoenix, "{ generativeModels { edges { node { id name kind } } } }", headers=headers)
    return {
        e["node"]["name"]: e["node"]["id"] for e in data["generativeModels"]["edges"] if e["node"]["kind"] == "CUSTOM"
    }


def push(
    phoenix: str,
    model: str,
    per_mtok: dict[str, float],
    existing: dict[str, str],
    headers: dict[str, str] | None = None,
) -> str:
    """Create or update the Phoenix model for ``model``; return ``created`` or ``updated``."""
    costs = [
        {
            "tokenType": token_type,
            "kind": "PROMPT" if token_type in _PROMPT_TYPES else "COMPLETION",
            "costPerMillionTokens": rate,
        }
        for token_type, rate in per_mtok.items()
    ]
    fields = {"name": NAME_PREFIX + model, "namePattern": f"^{re.escape(model)}$", "costs": costs}
    model_id = existing.get(fields["name"])
    if model_id is None:
        mutation = "mutation($input: CreateModelMutationInput!) { createModel(input: $input) { model { id } } }"
        _graphql(phoenix, mutation, {"input": fields}, headers)
        return "created"
    mutation = "mutation($input: UpdateModelMutationInput!) { updateModel(input: $input) { model { id } } }"
    _graphql(phoenix, mutation, {"input": {"id": model_id, **fields}}, headers)
    return "updated"


def models_seen(collector_api: str, days: int = 90) -> list[tuple[str | None, str]]:
    """``(provider, model)`` pairs the collector stored spend for in the last ``days`` days."""
    start = (date.today() - timedelta(days=days)).isoformat()
    url = f"{collector_api.rstrip('/')}/api/spend?from={start}&group_by=provider,model"
    with urllib.request.urlopen(url, timeout=30) as response:
        rows = json.loads(response.read())["rows"]
    return [(row.get("provider") or None, row["model"]) for row in rows if row.get("model")]


def sync(
    phoenix: str,
    models: list[tuple[str | None, str]],
    prices: Path | None = None,
    *,
    at: datetime | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """Mirror spendgate's rates for ``models`` into Phoenix; return ``{model: created|updated|unpriced}``."""
    pricer = Pricer(load_price_overrides(prices) if prices else None)
    at = at or datetime.now(UTC)
    existing = existing_models(phoenix, headers)
    outcome: dict[str, str] = {}
    for provider, model in dict.fromkeys(models):
        per_mtok = rates(pricer, provider, model, at)
        outcome[model] = "unpriced" if per_mtok is None else push(phoenix, model, per_mtok, existing, headers)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phoenix", required=True, help="Phoenix base URL, e.g. http://127.0.0.1:6006")
    parser.add_argument("--prices", type=Path, help="spendgate price overrides YAML (the collector's --prices)")
    parser.add_argument("--collector-api", help="collector API URL: sync every model it saw in 90 days")
    parser.add_argument("--model", action="append", default=[], help="[provider/]model, repeatable")
    parser.add_argument("--header", action="append", default=[], help="'Name: value' for Phoenix (auth), repeatable")
    args = parser.parse_args(argv)
    models: list[tuple[str | None, str]] = []
    for item in args.model:
        provider, _, name = item.rpartition("/")
        models.append((provider or None, name))
    if args.collector_api:
        models.extend(models_seen(args.collector_api))
    if not models:
        parser.error("name models with --model or give --collector-api")
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    for model, outcome in sync(args.phoenix, models, args.prices, headers=headers).items():
        print(f"{model}: {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
