"""The official ``openai`` SDK through the proxy to a simulated AWS Bedrock endpoint (SigV4, event streams).

Credentials come from the standard AWS environment variables, as they would in production; the
simulator checks every signature with botocore.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from spendgate_semconv import attributes as A
from spendgate_simulator import SimulatorConfig
from spendgate_simulator import create_app as create_simulator
from spendgate_simulator.bedrock import SIM_ACCESS_KEY_ID, SIM_SECRET_ACCESS_KEY
from tests.proxy.conftest import Gateway, start_gateway
from tests.support.aio_server import serve_app

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "edit_file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        },
    }
]


@pytest.fixture
def bedrock_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SIM_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SIM_SECRET_ACCESS_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with serve_app(lambda: create_simulator(SimulatorConfig())) as sim:
        yield from start_gateway(
            tmp_path,
            sim,
            providers={"aws": {"type": "bedrock", "base_url": sim.url, "region": "us-east-1"}},
            models=[
                {"name": "gpt-4.1", "provider": "aws", "upstream_model": "anthropic.claude-sonnet-4-5-20250929-v1:0"}
            ],
        )


def test_openai_client_streams_tool_calls_from_bedrock(bedrock_gateway: Gateway) -> None:
    messages = [{"role": "user", "content": "Fix the failing test in billing."}]
    chunks = list(
        bedrock_gateway.client().chat.completions.create(
            model="gpt-4.1", messages=messages, tools=TOOLS, stream=True, stream_options={"include_usage": True}
        )
    )
    args = "".join(
        tc.function.arguments or "" for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []
    )
    assert json.loads(args)["path"]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["tool_calls"]
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0

    attrs = bedrock_gateway.wait_spans(1)[0].attributes
    assert attrs[A.GEN_AI_PROVIDER_NAME] == "aws.bedrock"
    assert attrs[A.LLM_MODEL_NAME] == "anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert attrs[A.LLM_TOKEN_COUNT_PROMPT] == usage.prompt_tokens
    assert attrs[A.LLM_TOKEN_COUNT_COMPLETION] == usage.completion_tokens
    assert SIM_SECRET_ACCESS_KEY not in json.dumps(dict(attrs), default=str)


def test_non_streamed_call_from_bedrock(bedrock_gateway: Gateway) -> None:
    out = bedrock_gateway.client().chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "Summarise the diff."}]
    )
    assert out.choices[0].message.content
    assert out.usage is not None and out.usage.total_tokens > 0
