"""Sample traffic for ``spendgate up --demo``: a few developers working the way Cursor calls a gateway.

Each developer gets a virtual key (created once, kept in the data directory so re-runs reuse it),
then sends a handful of Cursor-shaped calls through the proxy: agent turns with tools, chat turns
and a summarisation, streamed with ``stream_options.include_usage`` as Cursor does, some of them
naming a repo with the ``x-spendgate-repo`` header. The point is that the first ``spendgate report``
shows real rows, priced, per developer, team and repo.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from spendgate.proxy.keys import create_key, read_key_file, revoke_key


@dataclass(frozen=True)
class DemoDeveloper:
    """A developer of the demo organisation."""

    user: str
    team: str
    cost_center: str
    repo: str


DEVELOPERS = (
    DemoDeveloper("ana@acme.example", "platform", "CC-100", "acme-api"),
    DemoDeveloper("bo@acme.example", "platform", "CC-100", "billing"),
    DemoDeveloper("cy@acme.example", "mobile", "CC-200", "acme-ios"),
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


def _calls(dev: DemoDeveloper, model: str, small_model: str) -> list[tuple[dict, dict[str, str]]]:
    """(body, extra headers) for one developer's session."""
    history = [{"role": "system", "content": _SYSTEM}]
    calls: list[tuple[dict, dict[str, str]]] = []
    for i, ask in enumerate(["Add retries to the HTTP client", "Now write tests for it", "Explain the change"]):
        history = [*history, {"role": "user", "content": f"{ask} in {dev.repo} (turn {i + 1}). " + "context " * 200}]
        body = {"model": model, "messages": history, "stream": True, "stream_options": {"include_usage": True}}
        if i < 2:
            body["tools"] = _TOOLS
        calls.append((body, {"x-spendgate-repo": dev.repo} if i != 2 else {}))
        history = [*history, {"role": "assistant", "content": "Done: " + "words " * 40}]
    calls.append(
        (
            {
                "model": small_model,
                "stream": False,
                "messages": [{"role": "user", "content": "Summarize the conversation so far. " + "detail " * 300}],
            },
            {"x-spendgate-repo": dev.repo},
        )
    )
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
    """Send every developer's session through the proxy at ``base_url``; returns calls that succeeded."""
    ok = 0
    async with aiohttp.ClientSession() as session:

        async def one(dev: DemoDeveloper) -> int:
            done = 0
            for body, headers in _calls(dev, model, small_model):
                hdrs = {"Authorization": f"Bearer {keys[dev.user]}", **headers}
                async with session.post(base_url + "/chat/completions", json=body, headers=hdrs) as resp:
                    await resp.read()
                    done += resp.status == 200
            return done

        for count in await asyncio.gather(*(one(d) for d in DEVELOPERS)):
            ok += count
    return ok
