"""A long Cursor agent history, generated: docs/cursor-facts.md reports 370+ messages re-sent every turn.

``cursor_history(300)`` is a Chat Completions body with exactly 300 messages (system included)
cycling through what an agent conversation holds: user asks, assistant text with one or two
(parallel) tool calls, the tool results, an assistant summary. ``shape="responses"`` gives the same
conversation as a Responses-shaped body (``instructions`` + ``input`` items, flat tools).
"""

from __future__ import annotations

import json
from typing import Any, Literal

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read the contents of a file.",
            "parameters": {
                "type": "object",
                "properties": {"target_file": {"type": "string"}},
                "required": ["target_file"],
            },
        },
    },
    {
        "type": "function",
        "name": "grep_search",
        "description": "Fast text-based regex search.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
]


def _turn(n: int) -> list[dict[str, Any]]:
    """One agent exchange; every third one calls two tools in parallel."""
    calls = [
        {
            "id": f"call_r{n}",
            "type": "function",
            "function": {"name": "read_file", "arguments": json.dumps({"target_file": f"src/m{n}.py"})},
        }
    ]
    if n % 3 == 0:
        calls.append(
            {
                "id": f"call_g{n}",
                "type": "function",
                "function": {"name": "grep_search", "arguments": json.dumps({"query": f"def f{n}"})},
            }
        )
    out: list[dict[str, Any]] = [
        {"role": "user", "content": f"Step {n}: look at module m{n} and tell me what f{n} does."},
        {"role": "assistant", "content": f"Reading m{n}.", "tool_calls": calls},
    ]
    out += [{"role": "tool", "tool_call_id": c["id"], "content": f"def f{n}():\n    return {n}\n"} for c in calls]
    out.append({"role": "assistant", "content": f"f{n} returns {n}."})
    return out


def _chat_messages(n_messages: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a coding agent in Cursor."}]
    turn = 0
    while len(messages) < n_messages - 1:
        messages += _turn(turn)
        turn += 1
    # Cut at a turn boundary, then pad with user text to land on exactly n_messages.
    while len(messages) > n_messages - 1 or messages[-1]["role"] == "tool" or "tool_calls" in messages[-1]:
        messages.pop()
    while len(messages) < n_messages:
        messages.append(
            {"role": "user", "content": "Continue."}
            if messages[-1]["role"] != "user"
            else {"role": "assistant", "content": "OK."}
        )
    if messages[-1]["role"] != "user":
        messages[-1] = {"role": "user", "content": "Now summarise what all these functions have in common."}
    return messages


def _as_responses(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    instructions = messages[0]["content"]
    items: list[dict[str, Any]] = []
    for m in messages[1:]:
        if m["role"] == "user":
            items.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text": m["content"]}]})
        elif m["role"] == "assistant":
            if m.get("content"):
                items.append(
                    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": m["content"]}]}
                )
            for c in m.get("tool_calls") or ():
                items.append(
                    {
                        "type": "function_call",
                        "call_id": c["id"],
                        "name": c["function"]["name"],
                        "arguments": c["function"]["arguments"],
                    }
                )
        else:
            items.append({"type": "function_call_output", "call_id": m["tool_call_id"], "output": m["content"]})
    return instructions, items


def cursor_history(n_messages: int = 300, shape: Literal["chat", "responses"] = "chat") -> dict[str, Any]:
    messages = _chat_messages(n_messages)
    assert len(messages) == n_messages
    if shape == "chat":
        return {
            "model": "gpt-4.1",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": messages,
            "tools": TOOLS,
        }
    instructions, items = _as_responses(messages)
    flat_tools = [t.get("function", t) | {"type": "function"} for t in TOOLS]
    return {
        "model": "gpt-5",
        "stream": True,
        "stream_options": {"include_usage": True},
        "instructions": instructions,
        "input": items,
        "tools": flat_tools,
        "reasoning": {"effort": "medium", "summary": "auto"},
    }
