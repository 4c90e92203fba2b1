"""Benchmark: µs per ``parse_workspace`` call on a 128K-token Cursor request (repo from the prompt).

The body is a reconstruction of a long Cursor agent turn (docs/cursor-facts.md: full history re-sent every
turn, 370+ messages, ~128K tokens): a ~20 KB system prompt with ``<user_info>`` near its end, then
~370 user / assistant / tool messages with code, ~512 KB of text in all (~4 chars per token). It
is parsed JSON, as the proxy holds it. Cases:

- ``sentence``: the path sentence in the system prompt (the common case);
- ``first_user``: ``<user_info>`` in the first user message instead (newer prompts);
- ``privacy``: a ``<user_info>`` block without a path (privacy mode: the parser reads its window
  and finds nothing);
- ``no_marker``: no Cursor markers at all (another client: the worst case, every window scanned);
- ``anthropic``: the same conversation Anthropic-shaped (``system`` blocks).

Then the proxy's whole added cost per call, ``RepoChain`` (``attribution/chain.py``) as the routes run
it: the alias split of the model name, then, when no stronger source named the repo, the hook window
lookup and the prompt parse + mapping. Cases: a header already names the repo (the chain stops at
once), a ``repo/model`` alias, no live hook window with and without a workspace sentence, and a live
hook window (the prompt is not read). For scale, ``orjson.loads`` of the same body: the proxy parses
every body once anyway.

Run ``python benchmarks/bench_workspace.py [--quick]``; ``benchmarks/run.py`` calls ``main``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from spendgate_proxy.attribution.chain import RepoChain
from spendgate_proxy.attribution.hook_window import HookAttribution, HookWindows
from spendgate_proxy.attribution.workspace import RepoMapper, parse_workspace
from spendgate_proxy.keys import Principal

TARGET_CHARS = 128_000 * 4
USER_INFO = (
    "<user_info>\nThe user's OS version is darwin 24.5.0. The absolute path of the user's workspace is "
    "/Users/jane/src/acme-api. The user's shell is /bin/zsh.\n</user_info>\n"
)
PRIVACY_INFO = "<user_info>\nThe user's OS version is darwin 24.5.0. The user's shell is /bin/zsh.\n</user_info>\n"
CODE = (
    "def handler(request):\n    payload = json.loads(request.body)\n    for item in payload['items']:\n"
    "        if item.get('price', 0) > LIMIT:\n            raise ValueError(f'too expensive: {item}')\n"
    "    return Response(status=204)\n"
)


def _system_prompt(info: str) -> str:
    rules = "<making_code_changes>\nNever output code to the USER unless requested. Use the edit tools.\n" * 250
    return "You are an AI coding assistant, powered by Claude Sonnet 4.6. You operate in Cursor.\n" + rules + info


def build_body(case: str) -> dict[str, Any]:
    info = {"sentence": USER_INFO, "anthropic": USER_INFO, "privacy": PRIVACY_INFO}.get(case, "")
    system = _system_prompt(info)
    first_user = (USER_INFO if case == "first_user" else "") + "<user_query>make the tests pass</user_query>"
    messages: list[dict[str, Any]] = [{"role": "user", "content": first_user}]
    size = len(system) + len(first_user)
    i = 0
    while size < TARGET_CHARS:
        i += 1
        text = f"Step {i}: reading src/handlers/h{i}.py\n" + CODE * 6
        role = ("assistant", "user", "tool")[i % 3]
        messages.append({"role": role, "content": text, **({"tool_call_id": f"call_{i}"} if role == "tool" else {})})
        size += len(text)
    if case == "anthropic":
        return {"model": "claude-sonnet-4-6", "system": [{"type": "text", "text": system}], "messages": messages}
    return {"model": "claude-sonnet-4-6", "messages": [{"role": "system", "content": system}, *messages]}


def _median_us(body: dict[str, Any], rounds: int) -> float:
    mapper = RepoMapper()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        mapper.repo_for(parse_workspace(body))
        samples.append((time.perf_counter_ns() - start) / 1000)
    return statistics.median(samples)


def _median_call_us(fn: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return statistics.median(samples)


MODELS = ["gpt-4.1", "gpt-4.1-mini", "claude-sonnet-4-6", "claude-opus-4-1", "openai/gpt-4o"]
PRINCIPAL = Principal("key_jane", "jane@acme.dev", team="platform", repo="acme-default")


def chain_cases(rounds: int) -> dict[str, dict[str, Any]]:
    """Median µs of the whole chain per call (split + resolve), as the routes run it, per case."""
    windows = HookWindows()
    # Other developers' windows, so the lookup is a miss in a populated table, as in production.
    for i in range(1000):
        windows.report(f"dev{i}@acme.dev", HookAttribution(f"r{i}", "main", None, None, 0, 2**62))
    chain = RepoChain(MODELS, workspace_rules=[{"pattern": "/Users/*/src/acme-*", "repo": "acme"}], hooks=windows)
    with_path, without_path = build_body("sentence"), build_body("no_marker")
    header = {"x-spendgate-repo": "acme-api"}

    def call(headers: dict[str, str], model: str, body: dict[str, Any], principal: Principal = PRINCIPAL) -> Any:
        def run() -> Any:
            _base, alias = chain.split_model(model)
            return chain.resolve(headers, {}, principal, now_ns=1, alias_repo=alias, body=body)

        return run

    hooked = Principal("key_dev1", "dev1@acme.dev", repo="acme-default")
    cases = {
        "header": call(header, "claude-sonnet-4-6", with_path),
        "alias": call({}, "acme-api/claude-sonnet-4-6", with_path),
        "workspace_sentence": call({}, "claude-sonnet-4-6", with_path),
        "no_workspace": call({}, "claude-sonnet-4-6", without_path),
        "hook_window": call({}, "claude-sonnet-4-6", with_path, hooked),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, fn in cases.items():
        got = fn()
        out[name] = {"median_us": round(_median_call_us(fn, rounds), 2), "repo": got.repo, "source": got.repo_source}
    raw = orjson.dumps(with_path)
    out["orjson_loads_body"] = {
        "median_us": round(_median_call_us(lambda: orjson.loads(raw), max(rounds // 10, 20)), 2),
        "repo": None,
        "source": "(for scale: the parse every call already pays)",
    }
    return out


def main(quick: bool = False) -> dict[str, Any]:
    """Median µs of ``parse_workspace`` + ``RepoMapper.repo_for`` per body shape, and of the chain per call."""
    rounds = 200 if quick else 5000
    results: dict[str, Any] = {"rounds": rounds, "cases": {}}
    for case in ("sentence", "first_user", "privacy", "no_marker", "anthropic"):
        body = build_body(case)
        chars = len(json.dumps(body))
        results["cases"][case] = {
            "body_chars": chars,
            "messages": len(body["messages"]),
            "median_us": round(_median_us(body, rounds), 2),
            "repo": RepoMapper().repo_for(parse_workspace(body)),
        }
    lines = [f"parse_workspace on a ~128K-token body ({rounds} rounds, median):"]
    for case, r in results["cases"].items():
        lines.append(
            f"  {case:11s} {r['median_us']:8.2f} µs   body {r['body_chars'] / 1e6:.2f} MB, "
            f"{r['messages']} messages -> {r['repo']}"
        )
    results["chain"] = chain_cases(rounds)
    lines.append(f"attribution chain per call (split + resolve) on the same body ({rounds} rounds, median):")
    for case, r in results["chain"].items():
        lines.append(f"  {case:18s} {r['median_us']:9.2f} µs   -> {r['repo']} ({r['source']})")
    results["report"] = "\n".join(lines)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(main(parser.parse_args().quick)["report"])
