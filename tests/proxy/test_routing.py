"""Routing rules, weighted splits and fallbacks, through the real proxy to real simulated providers.

Three simulators stand in for three providers: one always rate-limits (with retry-after), one
always fails with 500, one works. The issue's case: first target 429 with retry-after, second
500, third succeeds; and a failure after the first byte is never retried.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from spendgate_proxy.call.routing import RoutingPolicy
from spendgate_proxy.config import ConfigError, load_config
from spendgate_semconv import attributes as A
from spendgate_simulator import SimulatorConfig
from spendgate_simulator import create_app as create_simulator
from tests.proxy.conftest import Gateway, start_gateway
from tests.support.aio_server import serve_app

MESSAGES = [{"role": "user", "content": "Write the migration for the orders table."}]


@pytest.fixture
def routed(tmp_path: Path) -> Iterator[Gateway]:
    with (
        serve_app(lambda: create_simulator(SimulatorConfig(error_rate_429=1.0))) as limited,
        serve_app(lambda: create_simulator(SimulatorConfig(error_rate_500=1.0))) as broken,
        serve_app(lambda: create_simulator(SimulatorConfig())) as good,
    ):
        yield from start_gateway(
            tmp_path,
            good,
            providers={
                "limited": {"base_url": limited.url + "/v1"},
                "broken": {"base_url": broken.url + "/v1"},
                "sim": {"base_url": good.url + "/v1"},
            },
            models=[
                {"name": "big", "provider": "limited", "upstream_model": "gpt-4.1"},
                {"name": "big-backup", "provider": "broken", "upstream_model": "gpt-4.1"},
                {"name": "gpt-4.1", "provider": "sim"},
                {"name": "gpt-4.1-mini", "provider": "sim"},
            ],
            routing={
                "rules": [
                    {
                        "name": "short-chats-to-mini",
                        "match": {"model": "gpt-4.1", "feature": "chat", "max_prompt_tokens": 200},
                        "target": "gpt-4.1-mini",
                    },
                ],
                "fallbacks": {"big": ["big-backup", "gpt-4.1"]},
            },
        )


def test_fallbacks_429_then_500_then_success(routed: Gateway) -> None:
    out = routed.client().chat.completions.create(model="big", messages=MESSAGES, stream=True)
    chunks = list(out)
    assert chunks[-1].choices == [] or chunks[-1].choices[0].finish_reason
    span = routed.wait_spans(1)[0]
    attrs = span.attributes
    assert attrs[A.SPENDGATE_MODEL_REQUESTED] == "big"
    assert attrs[A.SPENDGATE_PROVIDER_ID] == "sim"
    assert attrs[A.LLM_MODEL_NAME] == "gpt-4.1"
    assert A.ERROR_TYPE not in attrs
    attempts = [(e.attributes[A.SPENDGATE_PROVIDER_ID], e.attributes.get(A.ERROR_TYPE)) for e in span.events]
    assert attempts == [("limited", "429"), ("broken", "500"), ("sim", None)]
    assert span.events[0].attributes[A.SPENDGATE_RETRY_AFTER_S] == 1.0

    # The rate-limited target is cooling down (retry-after: 1): the next call skips it.
    routed.clear()
    routed.client().chat.completions.create(model="big", messages=MESSAGES)
    span = routed.wait_spans(1)[0]
    assert [e.attributes[A.SPENDGATE_PROVIDER_ID] for e in span.events] == ["broken", "sim"]


def test_mid_stream_failure_is_not_retried(routed: Gateway) -> None:
    messages = [{"role": "user", "content": "long answer please [[sim:drop-after=3]]"}]
    with pytest.raises(openai.APIError):
        list(routed.client().chat.completions.create(model="gpt-4.1", messages=messages * 30, stream=True))
    span = routed.wait_spans(1)[0]
    assert span.attributes[A.ERROR_TYPE] == "upstream_stream_error"
    assert not span.events  # one attempt only: bytes had reached the client


def test_rule_routes_short_chats_and_records_the_rule(routed: Gateway) -> None:
    out = routed.client().chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert out.model == "gpt-4.1-mini"
    attrs = routed.wait_spans(1)[0].attributes
    assert attrs[A.SPENDGATE_ROUTING_RULE] == "short-chats-to-mini"
    assert attrs[A.SPENDGATE_MODEL_REQUESTED] == "gpt-4.1"
    assert attrs[A.LLM_MODEL_NAME] == "gpt-4.1-mini"
    routed.clear()
    # A long prompt does not match the rule.
    long_messages = [{"role": "user", "content": "context " * 400}]
    assert routed.client().chat.completions.create(model="gpt-4.1", messages=long_messages).model == "gpt-4.1"
    assert A.SPENDGATE_ROUTING_RULE not in routed.wait_spans(1)[0].attributes


def test_all_targets_failing_returns_the_last_error(routed: Gateway) -> None:
    resp = httpx.post(
        routed.proxy.url + "/v1/chat/completions",
        json={"model": "big-backup", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {routed.keys['ana@acme.com']}"},
    )
    assert resp.status_code == 500
    assert routed.wait_spans(1)[0].attributes[A.ERROR_TYPE] == "500"


def test_weighted_split_follows_weights() -> None:
    settings = load_config(
        overrides={
            "providers": {"p": {"base_url": "http://127.0.0.1:9/v1"}},
            "models": [{"name": n, "provider": "p"} for n in ("a", "b", "c")],
            "routing": {
                "rules": [
                    {
                        "name": "canary",
                        "match": {"model": "a"},
                        "targets": [{"model": "a", "weight": 9}, {"model": "b", "weight": 1}],
                    }
                ]
            },
        }
    )
    policy = RoutingPolicy(settings.routing)
    picks = [
        policy.plan("a", feature=None, user=None, team=None, cost_center=None, repo=None, prompt_tokens=0)[1][0]
        for _ in range(4000)
    ]
    assert 0.85 < picks.count("a") / len(picks) < 0.95
    assert policy.plan("c", feature=None, user=None, team=None, cost_center=None, repo=None, prompt_tokens=0) == (
        None,
        ["c"],
    )


def test_routing_config_errors_name_the_field() -> None:
    base = {"providers": {"p": {"base_url": "http://127.0.0.1:9/v1"}}, "models": [{"name": "a", "provider": "p"}]}
    with pytest.raises(ConfigError, match=r"routing.rules\[0\] \(r\): target model 'zz' is not in models"):
        load_config(overrides={**base, "routing": {"rules": [{"name": "r", "target": "zz"}]}})
    with pytest.raises(ConfigError, match=r"routing.fallbacks.a: model 'nope'"):
        load_config(overrides={**base, "routing": {"fallbacks": {"a": ["nope"]}}})
    with pytest.raises(ConfigError, match="exactly one of target"):
        load_config(overrides={**base, "routing": {"rules": [{"name": "r"}]}})
