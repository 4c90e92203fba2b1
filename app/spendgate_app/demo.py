"""Sample traffic for ``spendgate up --demo``: a few developers working the way Cursor calls a gateway.

Each developer gets a virtual key (created once, kept in the data directory so re-runs reuse it),
then sends a handful of Cursor-shaped calls through the proxy: agent turns with tools, chat turns
and a summarisation, streamed with ``stream_options.include_usage`` as Cursor does. Cursor sends no
headers, so each developer's repo reaches the gateway the way it would from Cursor
(docs/cursor-attribution.md): ana's hook reports it (``POST /hooks/cursor``), bo's prompt names the
workspace folder, cy picked a ``repo/model`` alias; the summaries, which carry none of that, fall
back to the key's default repo. The point is that the first ``spendgate report`` shows real rows,
priced, per developer, team and repo, and how each repo was learnt.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from spendgate_proxy.keys import create_key, read_key_file, revoke_key


@dataclass(frozen=True)
class DemoDeveloper:
    """A developer of the demo organisation."""

    user: str
    team: str
    cost_center: str
    repo: str
    via: str
    """How Cursor's calls tell the gateway the repo: ``hook``, ``workspace`` or ``alias``."""


DEVELOPERS = (
    DemoDeveloper("ana@acme.example", "platform", "CC-100", "acme-api", "hook"),
    DemoDeveloper("bo@acme.example", "platform", "CC-100", "billing", "workspace"),
    DemoDeveloper("cy@acme.example", "mobile", "CC-200", "acme-ios", "alias"),
)

_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "edit_file",
            "description": "Edit a file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "patch": {"type": "string"}}},
        },
    },
]
_SYSTEM = "You are a powerful agentic AI coding assistant. <user_info>The user's OS is linux.</user_info>"


def _system_prompt(dev: DemoDeveloper) -> str:
    if dev.via != "workspace":
        return _SYSTEM
    home = dev.user.split("@")[0]
    return _SYSTEM.replace(
        "</user_info>", f" The absolute path of the user's workspace is /home/{home}/src/{dev.repo}.</user_info>"
    )


def hook_report(dev: DemoDeveloper) -> dict[str, str]:
    """What ``.cursor/hooks/spendgate-report.py`` posts on ``beforeSubmitPrompt`` (docs/cursor-attribution.md)."""
    home = dev.user.split("@")[0]
    return {
        "hook_event_name": "beforeSubmitPrompt",
        "conversation_id": f"demo-{home}",
        "workspace_root": f"/home/{home}/src/{dev.repo}",
        "repo_url": f"https://github.com/acme/{dev.repo}",
        "repo": dev.repo,
        "branch": "main",
    }


def _calls(dev: DemoDeveloper, model: str, small_model: str) -> list[dict]:
    """The request bodies of one developer's session."""
    history = [{"role": "system", "content": _system_prompt(dev)}]
    agent_model = f"{dev.repo}/{model}" if dev.via == "alias" else model
    calls: list[dict] = []
    for i, ask in enumerate(["Add retries to the HTTP client", "Now write tests for it", "Explain the change"]):
        history = [*history, {"role": "user", "content": f"{ask} (turn {i + 1}). " + "context " * 200}]
        body = {"model": agent_model, "messages": history, "stream": True, "stream_options": {"include_usage": True}}
        if i < 2:
            body["tools"] = _TOOLS
        calls.append(body)
        history = [*history, {"role": "assistant", "content": "Done: " + "words " * 40}]
    summary = "Summarize the conversation so far. " + "detail " * 300
    calls.append({"model": small_model, "stream": False, "messages": [{"role": "user", "content": summary}]})
    return calls


def ensure_demo_keys(keys_file: Path) -> dict[str, str]:
    """Fresh keys for the demo developers; returns user -> key.

    Only hashes are stored, so a key cannot be shown twice: each demo run revokes the demo
    developers' previous keys and issues new ones, rather than keeping secrets in a file.
    """
    demo_users = {d.user for d in DEVELOPERS}
    for rec in read_key_file(keys_file):
        if rec.principal.user in demo_users and rec.principal.revoked_at is None:
            revoke_key(keys_file, rec.principal.key_id)
    keys: dict[str, str] = {}
    for dev in DEVELOPERS:
        keys[dev.user], _ = create_key(
            keys_file, user=dev.user, team=dev.team, cost_center=dev.cost_center, repo=dev.repo
        )
    return keys


async def send_demo_traffic(base_url: str, keys: dict[str, str], model: str, small_model: str) -> int:
    """Send every developer's session through the proxy at ``base_url`` (``.../v1``); returns calls that succeeded.

    The summaries go out first: they carry no repo of their own, and once a developer's hook window
    is open it would claim them too (the window is per developer, not per call).
    """
    ok = 0
    root = base_url.removesuffix("/").removesuffix("/v1")
    async with aiohttp.ClientSession() as session:

        async def one(dev: DemoDeveloper) -> int:
            done = 0
            auth = {"Authorization": f"Bearer {keys[dev.user]}"}
            *turns, summary = _calls(dev, model, small_model)
            for i, body in enumerate([summary, *turns]):
                if i == 1 and dev.via == "hook":
                    async with session.post(root + "/hooks/cursor", json=hook_report(dev), headers=auth) as resp:
                        await resp.read()
                async with session.post(base_url + "/chat/completions", json=body, headers=auth) as resp:
                    await resp.read()
                    done += resp.status == 200
            return done

        for count in await asyncio.gather(*(one(d) for d in DEVELOPERS)):
            ok += count
    return ok
