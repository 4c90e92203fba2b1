"""The repo attribution chain end to end: header > path prefix > model alias > cursor hook > prompt
workspace > key default, on every route, over real HTTP with the official SDKs.

The Cursor-style prompts are RECONSTRUCTIONS (docs/cursor-facts.md, docs/cursor-attribution.md section 2), not
captured traffic. Budget verdicts come from a real ``ControlState`` fed the collector's own control
messages, as the control stream would deliver them; hook windows are reported into the proxy's own
``HookWindows`` on its event loop, as ``POST /hooks/cursor`` would.
"""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spendgate_collector.budgets.board import ROUTE
from spendgate_collector.control import verdict_message
from spendgate_proxy.app import create_app
from spendgate_proxy.attribution.hook_window import HookAttribution
from spendgate_proxy.config import ConfigError, load_config
from spendgate_proxy.control.state import ControlState
from spendgate_proxy.keys import KeyDirectory, create_key
from spendgate_proxy.state import STATE, ProxyState
from spendgate_proxy.telemetry.spans import SDKRecordSink, SpanExportWorker
from spendgate_semconv import attributes as A
from spendgate_semconv import control_pb2
from tests.control.support import verdict
from tests.formats.support import load_fixture
from tests.proxy.conftest import PROVIDER_KEY, Gateway
from tests.support.aio_server import ServerHandle, serve_proxy

MODELS = [
    {"name": "gpt-4.1", "provider": "sim"},
    {"name": "gpt-4.1-mini", "provider": "sim"},
    {"name": "claude-sonnet-4-6", "provider": "claude"},
    # A provider-style id: its namespace must never be read as a repo.
    {"name": "openai/gpt-4.1-mini", "provider": "sim", "upstream_model": "gpt-4.1-mini"},
]
ANA, BO, DEE = "ana@acme.com", "bo@acme.com", "dee@acme.com"  # ana's key defaults to repo acme-api

PREAMBLE = (
    "You are an AI coding assistant, powered by GPT-4.1. You operate in Cursor.\n"
    "<communication>\nBe concise.\n</communication>\n<tool_calling>\nOnly call tools when necessary.\n"
    "</tool_calling>\n" * 10
)
SENTENCE = (
    PREAMBLE + "<user_info>\nThe user's OS version is darwin 24.5.0. The absolute path of the user's workspace is "
    "/Users/jane/src/billing-service. The user's shell is /bin/zsh.\n</user_info>\n"
)
PATH_LINE = (
    "<user_info>\nOS Version: linux 6.8.0\nShell: bash\nWorkspace Path: /home/dev/work/web-app\n"
    "Note: Prefer using absolute paths over relative paths as tool call args when possible.\n</user_info>\n"
)
SEVERAL_ROOTS = (
    PREAMBLE + "<user_info>\nThe absolute paths of the user's workspaces are /home/dev/mobile-app, "
    "/home/dev/shared-lib.\n</user_info>\n"
)
WINDOWS_URI = PREAMBLE + "<user_info>\nWorkspace Path: file:///c%3A/Users/dev/src/Desk%20Tool\n</user_info>\n"
WITH_REMOTE = (
    PREAMBLE + "<user_info>\nThe absolute path of the user's workspace is /Users/jane/src/checkout. "
    "Its git remote is git@github.com:acme/payments-api.git\n</user_info>\n"
)
PRIVACY_REDACTED = (
    PREAMBLE + "<user_info>\nThe user's OS version is win32. The absolute path of the user's workspace is "
    "[redacted].\n</user_info>\n"
)
PRIVACY_HIDDEN = PREAMBLE + "<user_info>\nWorkspace Path: <hidden in privacy mode>\n</user_info>\n"
PRIVACY_NO_SENTENCE = PREAMBLE + "<user_info>\nThe user's OS version is darwin 24.5.0.\n</user_info>\n"
NO_PATH = "You are a helpful assistant. Answer briefly."


@dataclass
class Proxy:
    """A running gateway plus its state, so a test can feed verdicts and hook windows into it."""

    gw: Gateway
    state: ProxyState

    def chat(self, user: str = BO, **kwargs: Any) -> openai.OpenAI:
        return self.gw.client(user, **kwargs)

    def span(self) -> Any:
        spans = self.gw.wait_spans(1)
        assert 1 == len(spans), [s.name for s in spans]
        self.gw.clear()
        return spans[0]

    def sent(self) -> dict[str, Any]:
        """What the simulated provider last received: path and parsed body."""
        last = httpx.get(self.gw.upstream.url + "/_sim/requests").json()[-1]
        return last

    def report_hook(self, user: str, repo: str, branch: str | None) -> None:
        now = time.time_ns()
        window = HookAttribution(repo, branch, f"https://github.com/acme/{repo}", f"/src/{repo}", now, now + 60 * 10**9)

        async def put() -> None:  # on the proxy's loop, where the request path reads the windows
            self.state.hook_windows.report(user, window)

        self.gw.proxy.call(put())

    def forget_hook(self, user: str) -> None:
        async def drop() -> None:
            self.state.hook_windows.forget(user)

        self.gw.proxy.call(drop())


def start(tmp_path: Path, sim: ServerHandle, control: ControlState | None = None, **settings: Any) -> Iterator[Proxy]:
    keys_file = tmp_path / "keys.yaml"
    keys = {}
    for user, repo in [(ANA, "acme-api"), (BO, None)]:
        keys[user], _ = create_key(keys_file, user=user, team="platform", cost_center="CC-100", repo=repo)
    keys[DEE], _ = create_key(keys_file, user=DEE, team="mobile", models=("gpt-4.1-mini",))
    config = load_config(
        overrides={
            "keys_file": str(keys_file),
            "providers": {
                "sim": {"base_url": sim.url + "/v1", "api_key_env": "SIM_KEY"},
                "claude": {"type": "anthropic", "base_url": sim.url, "api_key_env": "SIM_KEY"},
            },
            "models": MODELS,
            "control": {"endpoint": "off"},  # no collector: ``control`` below stands in for the stream when given
            **settings,
        },
        env={"SIM_KEY": PROVIDER_KEY},
    )
    exporter = InMemorySpanExporter()
    worker = SpanExportWorker(SDKRecordSink(exporter, Resource.create({"service.name": "t"})), interval_s=0.05)
    box: dict[str, ProxyState] = {}

    def make() -> Any:
        app = create_app(config, keys=KeyDirectory(keys_file), worker=worker)
        if control is not None:
            app[STATE].control = control  # stands in for the control stream: no collector started
        box["state"] = app[STATE]
        return app

    with serve_proxy(make) as px:
        gw = Gateway(px, sim, exporter, worker, keys, keys_file)
        yield Proxy(gw, box["state"])


@pytest.fixture
def proxy(tmp_path: Path, simulator: ServerHandle) -> Iterator[Proxy]:
    yield from start(tmp_path, simulator)


def chat_body(system: str, user: str = "fix the failing test") -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def repo_of(span: Any) -> tuple[str | None, str]:
    attrs = span.attributes
    return attrs.get(A.VCS_REPOSITORY_NAME), attrs[A.SPENDGATE_REPO_SOURCE]


def cursor_post(p: Proxy, body: dict[str, Any], user: str = BO, path: str = "/cursor/v1/chat/completions") -> Any:
    headers = {"Authorization": f"Bearer {p.gw.keys[user]}"}
    return httpx.post(p.gw.proxy.url + path, json=body, headers=headers, timeout=30)


# --- repo from the prompt ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "repo"),
    [
        (chat_body(SENTENCE), "billing-service"),
        (chat_body("You are a coding agent.", PATH_LINE + "<user_query>add retries</user_query>"), "web-app"),
        (chat_body(SEVERAL_ROOTS), "mobile-app"),
        (chat_body(WINDOWS_URI), "Desk Tool"),
        (chat_body(WITH_REMOTE), "payments-api"),  # the remote's name beats the folder's
    ],
    ids=["sentence", "path-line-in-user", "several-roots", "windows-file-uri", "git-remote"],
)
def test_prompt_workspace_through_the_openai_client(proxy: Proxy, messages: Any, repo: str) -> None:
    proxy.chat().chat.completions.create(model="gpt-4.1", messages=messages)
    assert (repo, A.RepoSource.PROMPT_WORKSPACE) == repo_of(proxy.span())


@pytest.mark.parametrize("system", [PRIVACY_REDACTED, PRIVACY_HIDDEN, PRIVACY_NO_SENTENCE, NO_PATH])
def test_privacy_mode_or_no_path_falls_back_to_the_key(proxy: Proxy, system: str) -> None:
    proxy.chat(ANA).chat.completions.create(model="gpt-4.1", messages=chat_body(system))
    assert ("acme-api", A.RepoSource.KEY_DEFAULT) == repo_of(proxy.span())
    proxy.chat(BO).chat.completions.create(model="gpt-4.1", messages=chat_body(system))
    assert (None, A.RepoSource.NONE) == repo_of(proxy.span())


def test_prompt_workspace_beats_the_key_default(proxy: Proxy) -> None:
    stream = proxy.chat(ANA).chat.completions.create(model="gpt-4.1", messages=chat_body(SENTENCE), stream=True)
    assert list(stream)
    assert ("billing-service", A.RepoSource.PROMPT_WORKSPACE) == repo_of(proxy.span())


@pytest.mark.parametrize(
    "fixture", ["chat_ask_mixed_tools.json", "responses_agent_apply_patch.json", "anthropic_claude_agent.json"]
)
def test_cursor_route_reads_every_body_shape(proxy: Proxy, fixture: str) -> None:
    body = load_fixture(fixture)  # each carries "/Users/dev/src/acme-api" in its prompt
    body["model"] = "gpt-4.1"
    assert 200 == cursor_post(proxy, body).status_code
    assert ("acme-api", A.RepoSource.PROMPT_WORKSPACE) == repo_of(proxy.span())


def test_messages_route_reads_anthropic_system_blocks(proxy: Proxy) -> None:
    client = anthropic.Anthropic(base_url=proxy.gw.proxy.url, api_key=proxy.gw.keys[BO], max_retries=0)
    client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=64,
        system=[{"type": "text", "text": PREAMBLE}, {"type": "text", "text": PATH_LINE}],
        messages=[{"role": "user", "content": "hi"}],
    )
    assert ("web-app", A.RepoSource.PROMPT_WORKSPACE) == repo_of(proxy.span())


def test_mapping_rules_from_config(tmp_path: Path, simulator: ServerHandle) -> None:
    rules = [
        {"pattern": "/Users/*/src/billing-*", "repo": "billing"},
        {"regex": r"github\.com/acme/(?P<repo>[^/]+)$"},
    ]
    for p in start(tmp_path, simulator, cursor={"workspace_repos": rules}):
        client = p.chat()
        client.chat.completions.create(model="gpt-4.1", messages=chat_body(SENTENCE))
        assert ("billing", A.RepoSource.PROMPT_WORKSPACE) == repo_of(p.span())
        client.chat.completions.create(model="gpt-4.1", messages=chat_body(WITH_REMOTE))
        assert ("payments-api", A.RepoSource.PROMPT_WORKSPACE) == repo_of(p.span())
        client.chat.completions.create(model="gpt-4.1", messages=chat_body(SEVERAL_ROOTS))  # no rule: folder name
        assert ("mobile-app", A.RepoSource.PROMPT_WORKSPACE) == repo_of(p.span())


def test_prompt_workspace_can_be_turned_off(tmp_path: Path, simulator: ServerHandle) -> None:
    for p in start(tmp_path, simulator, cursor={"prompt_workspace": False}):
        p.chat(ANA).chat.completions.create(model="gpt-4.1", messages=chat_body(SENTENCE))
        assert ("acme-api", A.RepoSource.KEY_DEFAULT) == repo_of(p.span())


@pytest.mark.parametrize(
    ("rules", "field", "says"),
    [
        ([{"regex": "github\\.com/(unclosed"}], "cursor.workspace_repos.0.regex", "not a valid regular expression"),
        (
            [{"repo": "x", "pattern": "/a/*"}, {"pattern": "/b", "regex": "b", "repo": "b"}],
            "cursor.workspace_repos.1",
            "exactly one",
        ),
        ([{"pattern": "/src/*"}], "cursor.workspace_repos.0", "give repo"),
        ([{"regex": "github"}], "cursor.workspace_repos.0", "(?P<repo>"),
        ([{"pattern": "/a", "repo": "a", "rpo": "typo"}], "cursor.workspace_repos.0.rpo", "Extra inputs"),
    ],
)
def test_bad_mapping_rules_fail_at_start_naming_the_field(rules: Any, field: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides={"cursor": {"workspace_repos": rules}}, env={})
    assert f"{field}:" in str(err.value) and says in str(err.value)


# --- repo from the model alias -----------------------------------------------------------------


def test_alias_on_the_chat_passthrough(proxy: Proxy) -> None:
    reply = proxy.chat().chat.completions.create(model="web-app/gpt-4.1", messages=chat_body(SENTENCE))
    assert reply.choices[0].message.content
    span = proxy.span()
    assert ("web-app", A.RepoSource.MODEL_ALIAS) == repo_of(span)
    assert "gpt-4.1" == span.attributes[A.SPENDGATE_MODEL_REQUESTED] == span.attributes[A.GEN_AI_REQUEST_MODEL]
    sent = proxy.sent()
    assert ("/v1/chat/completions", "gpt-4.1") == (sent["path"], sent["body"]["model"])


def test_alias_on_the_chat_route_served_by_anthropic(proxy: Proxy) -> None:
    stream = proxy.chat().chat.completions.create(
        model="web-app/claude-sonnet-4-6", messages=chat_body(NO_PATH), stream=True
    )
    chunks = list(stream)
    assert chunks and "web-app/claude-sonnet-4-6" == chunks[0].model  # the client's name is echoed
    span = proxy.span()
    assert ("web-app", A.RepoSource.MODEL_ALIAS) == repo_of(span)
    assert "claude-sonnet-4-6" == span.attributes[A.SPENDGATE_MODEL_REQUESTED]
    sent = proxy.sent()
    assert ("/v1/messages", "claude-sonnet-4-6") == (sent["path"], sent["body"]["model"])


@pytest.mark.parametrize(
    ("model", "path"), [("claude-sonnet-4-6", "/v1/messages"), ("gpt-4.1", "/v1/chat/completions")]
)
def test_alias_on_the_messages_route(proxy: Proxy, model: str, path: str) -> None:
    client = anthropic.Anthropic(base_url=proxy.gw.proxy.url, api_key=proxy.gw.keys[BO], max_retries=0)
    client.messages.create(model=f"acme/web-app/{model}", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    span = proxy.span()
    assert ("acme/web-app", A.RepoSource.MODEL_ALIAS) == repo_of(span)  # an org/repo prefix
    assert model == span.attributes[A.SPENDGATE_MODEL_REQUESTED]
    sent = proxy.sent()
    assert (path, model) == (sent["path"], sent["body"]["model"])


def test_alias_on_the_cursor_route(proxy: Proxy) -> None:
    body = load_fixture("chat_ask_mixed_tools.json")  # its prompt names acme-api: the alias wins
    body["model"] = "web-app/gpt-4.1"
    assert 200 == cursor_post(proxy, body).status_code
    span = proxy.span()
    assert ("web-app", A.RepoSource.MODEL_ALIAS) == repo_of(span)
    assert "gpt-4.1" == span.attributes[A.SPENDGATE_MODEL_REQUESTED]
    assert "gpt-4.1" == proxy.sent()["body"]["model"]


def test_alias_on_count_tokens(proxy: Proxy) -> None:
    client = anthropic.Anthropic(base_url=proxy.gw.proxy.url, api_key=proxy.gw.keys[BO], max_retries=0)
    counted = client.messages.count_tokens(
        model="web-app/claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}]
    )
    assert counted.input_tokens > 0
    sent = proxy.sent()
    assert ("/v1/messages/count_tokens", "claude-sonnet-4-6") == (sent["path"], sent["body"]["model"])


def test_alias_base_model_is_looked_up_and_allow_checked(proxy: Proxy) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        proxy.chat().chat.completions.create(model="web-app/gpt-9", messages=chat_body(NO_PATH))
    assert "web-app/gpt-9" in str(missing.value)  # no such base model: the whole name is not a model either
    with pytest.raises(openai.PermissionDeniedError) as denied:
        proxy.chat(DEE).chat.completions.create(model="web-app/gpt-4.1", messages=chat_body(NO_PATH))
    assert "gpt-4.1" in str(denied.value)
    proxy.chat(DEE).chat.completions.create(model="web-app/gpt-4.1-mini", messages=chat_body(NO_PATH))
    assert ("web-app", A.RepoSource.MODEL_ALIAS) == repo_of(proxy.span())


def test_a_provider_style_id_is_never_an_alias(proxy: Proxy) -> None:
    proxy.chat(ANA).chat.completions.create(model="openai/gpt-4.1-mini", messages=chat_body(NO_PATH))
    span = proxy.span()
    assert ("acme-api", A.RepoSource.KEY_DEFAULT) == repo_of(span)
    assert "openai/gpt-4.1-mini" == span.attributes[A.SPENDGATE_MODEL_REQUESTED]
    assert "gpt-4.1-mini" == proxy.sent()["body"]["model"]


# --- precedence ---------------------------------------------------------------------------------


def test_header_beats_alias_beats_hook_beats_workspace_beats_key(proxy: Proxy) -> None:
    client = proxy.chat(ANA)
    headers = {"x-spendgate-repo": "from-header", "x-spendgate-branch": "hdr-branch"}
    proxy.report_hook(ANA, "from-hook", "hook-branch")

    client.chat.completions.create(model="from-alias/gpt-4.1", messages=chat_body(SENTENCE), extra_headers=headers)
    span = proxy.span()
    assert ("from-header", A.RepoSource.HEADER) == repo_of(span)
    assert "hdr-branch" == span.attributes[A.VCS_REF_HEAD_NAME]
    assert "gpt-4.1" == span.attributes[A.SPENDGATE_MODEL_REQUESTED]  # the alias is still split off

    client.chat.completions.create(model="from-alias/gpt-4.1", messages=chat_body(SENTENCE))
    span = proxy.span()
    assert ("from-alias", A.RepoSource.MODEL_ALIAS) == repo_of(span)
    assert A.VCS_REF_HEAD_NAME not in span.attributes  # the hook's branch belongs to the hook's repo

    client.chat.completions.create(model="gpt-4.1", messages=chat_body(SENTENCE))
    span = proxy.span()
    assert ("from-hook", A.RepoSource.CURSOR_HOOK) == repo_of(span)
    assert "hook-branch" == span.attributes[A.VCS_REF_HEAD_NAME]

    client.chat.completions.create(
        model="gpt-4.1", messages=chat_body(SENTENCE), extra_headers={"x-spendgate-branch": "hdr-branch"}
    )
    span = proxy.span()
    assert ("from-hook", A.RepoSource.CURSOR_HOOK) == repo_of(span)
    assert "hdr-branch" == span.attributes[A.VCS_REF_HEAD_NAME]  # a header branch still wins

    proxy.chat(BO).chat.completions.create(model="gpt-4.1", messages=chat_body(SENTENCE))  # bo has no window
    assert ("billing-service", A.RepoSource.PROMPT_WORKSPACE) == repo_of(proxy.span())

    proxy.forget_hook(ANA)
    client.chat.completions.create(model="gpt-4.1", messages=chat_body(NO_PATH))
    assert ("acme-api", A.RepoSource.KEY_DEFAULT) == repo_of(proxy.span())


def test_path_prefix_beats_alias(proxy: Proxy) -> None:
    client = openai.OpenAI(
        base_url=proxy.gw.proxy.url + "/t/repo=from-prefix,branch=main/v1", api_key=proxy.gw.keys[BO], max_retries=0
    )
    client.chat.completions.create(model="from-alias/gpt-4.1", messages=chat_body(SENTENCE))
    span = proxy.span()
    assert ("from-prefix", A.RepoSource.PATH_PREFIX) == repo_of(span)
    assert "gpt-4.1" == proxy.sent()["body"]["model"]


def test_hook_window_reaches_the_cursor_route(proxy: Proxy) -> None:
    proxy.report_hook(BO, "api-gateway", "feature/budgets")
    body = load_fixture("responses_agent_apply_patch.json")
    body["model"] = "gpt-4.1"
    assert 200 == cursor_post(proxy, body).status_code
    span = proxy.span()
    assert ("api-gateway", A.RepoSource.CURSOR_HOOK) == repo_of(span)
    assert "feature/budgets" == span.attributes[A.VCS_REF_HEAD_NAME]


# --- budget verdicts see the repo at request time ------------------------------------------------


def _control(*verdicts: Any) -> ControlState:
    state = ControlState()
    state.apply(
        control_pb2.ControlUpdate(
            version=1, epoch=1, snapshot=True, verdicts_upsert=[verdict_message(v) for v in verdicts]
        )
    )
    return state


@pytest.fixture
def paused(tmp_path: Path, simulator: ServerHandle) -> Iterator[Proxy]:
    control = _control(
        verdict("pause-web", budget_id="b-web", repo="web-app"),
        verdict("pause-billing", budget_id="b-billing", repo="billing-service"),
        verdict("route-mobile", ROUTE, repo="mobile-app", route_from="gpt-4.1", route_to="gpt-4.1-mini"),
    )
    yield from start(tmp_path, simulator, control=control)


def test_pause_through_an_alias_on_every_route(paused: Proxy) -> None:
    with pytest.raises(openai.APIStatusError) as refused:
        paused.chat(ANA).chat.completions.create(model="web-app/gpt-4.1", messages=chat_body(NO_PATH))
    assert 402 == refused.value.status_code and "b-web" in str(refused.value)
    claude = anthropic.Anthropic(base_url=paused.gw.proxy.url, api_key=paused.gw.keys[ANA], max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as refused_messages:
        claude.messages.create(
            model="web-app/claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    assert 402 == refused_messages.value.status_code
    body = load_fixture("chat_ask_mixed_tools.json")
    body["model"] = "web-app/gpt-4.1"
    reply = cursor_post(paused, body, user=ANA)  # Cursor gets the pause as a chat message by default
    assert 200 == reply.status_code and "b-web" in reply.text
    # The same key, the same model, no alias: not paused.
    paused.chat(ANA).chat.completions.create(model="gpt-4.1", messages=chat_body(NO_PATH))
    assert ("acme-api", A.RepoSource.KEY_DEFAULT) == repo_of(paused.span())


def test_pause_through_a_workspace_path(paused: Proxy) -> None:
    with pytest.raises(openai.APIStatusError) as refused:
        paused.chat(BO).chat.completions.create(model="gpt-4.1", messages=chat_body(SENTENCE))
    assert 402 == refused.value.status_code and "b-billing" in str(refused.value)
    body = load_fixture("anthropic_claude_agent.json")
    body["model"] = "gpt-4.1"
    body["system"][0]["text"] = SENTENCE
    reply = cursor_post(paused, body)
    assert 200 == reply.status_code and "b-billing" in reply.text
    # A header naming another repo is stronger than the prompt: the call goes through.
    paused.chat(BO).chat.completions.create(
        model="gpt-4.1", messages=chat_body(SENTENCE), extra_headers={"x-spendgate-repo": "other"}
    )
    assert ("other", A.RepoSource.HEADER) == repo_of(paused.span())


def test_route_verdict_sees_the_workspace_repo_and_the_base_model(paused: Proxy) -> None:
    paused.chat(BO).chat.completions.create(model="gpt-4.1", messages=chat_body(SEVERAL_ROOTS))
    span = paused.span()
    assert ("mobile-app", A.RepoSource.PROMPT_WORKSPACE) == repo_of(span)
    assert "gpt-4.1-mini" == paused.sent()["body"]["model"]
    paused.chat(BO).chat.completions.create(model="mobile-app/gpt-4.1", messages=chat_body(NO_PATH))
    assert ("mobile-app", A.RepoSource.MODEL_ALIAS) == repo_of(paused.span())
    assert "gpt-4.1-mini" == paused.sent()["body"]["model"]
