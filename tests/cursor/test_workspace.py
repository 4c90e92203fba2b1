"""Repo from the prompt: workspace parsing on Cursor-style prompts, and the repo mapping rules.

The prompts below are RECONSTRUCTIONS built from the description in docs/cursor-facts.md and
public copies of Cursor prompts ("The absolute path of the user's workspace is ..." inside
``<user_info>``); they are not captured traffic. Confirm against real traffic on first deploy.
"""

from __future__ import annotations

import pytest

from spendgate_proxy.attribution.workspace import (
    RepoMapper,
    WorkspaceInfo,
    last_component,
    normalise_remote_url,
    parse_workspace,
)

AGENT_PREAMBLE = (
    "You are an AI coding assistant, powered by Claude Sonnet 4.6. You operate in Cursor.\n"
    "You are pair programming with a USER to solve their coding task.\n"
    "<communication>\nBe concise. Use backticks to format file, directory, function, and class names.\n"
    "</communication>\n<tool_calling>\nOnly call tools when necessary.\n</tool_calling>\n" * 20
)
SENTENCE_PROMPT = (
    AGENT_PREAMBLE
    + "<user_info>\nThe user's OS version is darwin 24.5.0. The absolute path of the user's workspace is "
    "/Users/jane/src/acme-api. The user's shell is /bin/zsh.\n</user_info>\n"
)
WORKSPACE_PATH_LINE_PROMPT = (
    "<user_info>\nOS Version: linux 6.8.0\nShell: bash\nWorkspace Path: /home/dev/work/billing-service\n"
    "Note: Prefer using absolute paths over relative paths as tool call args when possible.\n</user_info>"
)


def chat(system: str, user: str = "fix the failing test") -> dict:
    return {
        "model": "claude-sonnet-4-6",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }


def test_sentence_in_system_message():
    info = parse_workspace(chat(SENTENCE_PROMPT))
    assert info == WorkspaceInfo(paths=("/Users/jane/src/acme-api",), found_in="messages[0]")
    assert RepoMapper().repo_for(info) == "acme-api"


def test_workspace_path_line():
    info = parse_workspace(chat(WORKSPACE_PATH_LINE_PROMPT))
    assert info is not None and info.path == "/home/dev/work/billing-service"


def test_user_info_in_first_user_message():
    # Newer agent prompts attach <user_info> to the first user turn rather than the system prompt.
    body = chat("You are a coding agent.", user=WORKSPACE_PATH_LINE_PROMPT + "\n<user_query>add retries</user_query>")
    info = parse_workspace(body)
    assert info is not None and info.path == "/home/dev/work/billing-service"
    assert info.found_in == "messages[1]"


def test_anthropic_shaped_system_blocks():
    body = {
        "model": "claude-sonnet-4-6",
        "system": [{"type": "text", "text": AGENT_PREAMBLE}, {"type": "text", "text": SENTENCE_PROMPT[-200:]}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    info = parse_workspace(body)
    assert info is not None and info.path == "/Users/jane/src/acme-api" and info.found_in == "system"


def test_responses_shaped_instructions_and_input():
    body = {"model": "gpt-5", "instructions": SENTENCE_PROMPT, "input": [{"role": "user", "content": "x"}]}
    assert parse_workspace(body).path == "/Users/jane/src/acme-api"
    body = {
        "model": "gpt-5",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": SENTENCE_PROMPT}]}
        ],
    }
    assert parse_workspace(body).path == "/Users/jane/src/acme-api"


@pytest.mark.parametrize(
    ("sentence", "paths"),
    [
        (
            "The absolute paths of the user's workspaces are /Users/jane/src/acme-api, /Users/jane/src/acme-web.",
            ("/Users/jane/src/acme-api", "/Users/jane/src/acme-web"),
        ),
        (
            "The user's workspace paths are: /srv/a and /srv/b.",
            ("/srv/a", "/srv/b"),
        ),
        (
            "Workspace Paths:\n- /work/mono/services/api\n- /work/mono/services/web\n",
            ("/work/mono/services/api", "/work/mono/services/web"),
        ),
        (
            "The absolute path of the user's workspace is C:\\Users\\dev\\source\\repos\\Acme.Api.",
            ("C:\\Users\\dev\\source\\repos\\Acme.Api",),
        ),
        (
            "The absolute path of the user's workspace is file:///c%3A/Users/dev/acme-api.",
            ("C:\\Users\\dev\\acme-api",),
        ),
        ("The absolute path of the user's workspace is file:///home/dev/my%20proj.", ("/home/dev/my proj",)),
        (
            "The absolute path of the user's workspace is /Users/Jane Doe/src/proj.v2. The shell is zsh.",
            ("/Users/Jane Doe/src/proj.v2",),
        ),
        ("The absolute path of the user's workspace is `/opt/code/acme-api/`.", ("/opt/code/acme-api",)),
        ("The absolute path of the user\u2019s workspace is /a/b.", ("/a/b",)),
    ],
)
def test_sentence_variants(sentence: str, paths: tuple[str, ...]):
    info = parse_workspace(chat(f"<user_info>\nThe user's OS version is win32 10.0.22631. {sentence}\n</user_info>"))
    assert info is not None and info.paths == paths


@pytest.mark.parametrize(
    "system",
    [
        # Privacy mode variants: the block is there, the path is not (or is redacted).
        "<user_info>\nThe user's OS version is darwin 24.5.0. The user's shell is /bin/zsh.\n</user_info>",
        "<user_info>\nThe absolute path of the user's workspace is [redacted]. Shell: zsh\n</user_info>",
        "<user_info>\nWorkspace Path: <hidden in privacy mode>\n</user_info>",
        "<user_info>\nThe absolute path of the user's workspace is not available.\n</user_info>",
        # Not Cursor at all.
        "You are a helpful assistant.",
        "",
    ],
)
def test_no_path(system: str):
    assert parse_workspace(chat(system)) is None


def test_git_remote_in_prompt():
    system = (
        "<user_info>\nThe absolute path of the user's workspace is /home/dev/checkout.\n"
        "The workspace's git remote origin is git@github.com:acme/api.git.\n</user_info>"
    )
    info = parse_workspace(chat(system))
    assert info == WorkspaceInfo(("/home/dev/checkout",), "https://github.com/acme/api", "messages[0]")
    # The remote names the repo better than a checkout folder called "checkout".
    assert RepoMapper().repo_for(info) == "api"


def test_remote_without_path_is_enough():
    info = parse_workspace(chat("<user_info>\nGit remote: https://gitlab.com/acme/infra/terraform.git\n</user_info>"))
    assert info is not None and info.paths == () and info.repo_url == "https://gitlab.com/acme/infra/terraform"
    assert RepoMapper().repo_for(info) == "terraform"


def test_fallback_without_user_info_tag():
    info = parse_workspace(chat("Context: The absolute path of the user's workspace is /src/acme-api. Be brief."))
    assert info is not None and info.path == "/src/acme-api"


def test_only_leading_window_is_read():
    # A marker past max_chars is not looked at: the parser's cost is bounded by design.
    system = "x" * 5000 + SENTENCE_PROMPT[-200:]
    assert parse_workspace(chat(system), max_chars=1000) is None
    assert parse_workspace(chat(system)) is not None


def test_history_beyond_first_messages_is_ignored():
    late = {"role": "user", "content": "<user_info>Workspace Path: /elsewhere</user_info>"}
    body = {"messages": [{"role": "system", "content": "plain"}, *([{"role": "assistant", "content": "ok"}] * 5), late]}
    assert parse_workspace(body) is None


@pytest.mark.parametrize(
    "body", [{}, {"messages": "nope"}, {"messages": [None, 3]}, {"system": 12}, {"input": [{"content": {"x": 1}}]}]
)
def test_malformed_bodies_never_raise(body: dict):
    assert parse_workspace(body) is None


# --- mapping ---------------------------------------------------------------------------------------


def info(*paths: str, url: str | None = None) -> WorkspaceInfo:
    return WorkspaceInfo(paths=paths, repo_url=url)


def test_rules_in_order_then_last_component():
    mapper = RepoMapper(
        [
            {"pattern": "/work/mono/services/api*", "repo": "mono-api"},
            {"pattern": "/work/mono/*", "repo": "mono"},
            {"regex": r"^/Users/[^/]+/src/(?P<repo>[^/]+)"},
            {"regex": r"github\.com/acme/legacy-", "repo": "legacy"},
        ]
    )
    assert mapper.repo_for(info("/work/mono/services/api")) == "mono-api"
    assert mapper.repo_for(info("/work/mono/services/web/src")) == "mono"
    assert mapper.repo_for(info("/Users/jane/src/acme-web/packages/ui")) == "acme-web"
    assert mapper.repo_for(info("/tmp/x", url="https://github.com/acme/legacy-billing")) == "legacy"
    assert mapper.repo_for(info("/tmp/scratch")) == "scratch"
    assert mapper.repo_for(None) is None


def test_windows_paths_match_slash_globs():
    mapper = RepoMapper([{"pattern": "C:/Users/*/source/repos/Acme.Api*", "repo": "acme-api"}])
    assert mapper.repo_for(info("C:\\Users\\dev\\source\\repos\\Acme.Api")) == "acme-api"
    assert RepoMapper().repo_for(info("C:\\Users\\dev\\source\\repos\\Acme.Web")) == "Acme.Web"


def test_second_root_can_match():
    mapper = RepoMapper([{"pattern": "/srv/b", "repo": "bee"}])
    assert mapper.repo_for(info("/srv/a", "/srv/b")) == "bee"
    assert RepoMapper().repo_for(info("/srv/a", "/srv/b")) == "a"


def test_invalid_rules_reported_together():
    with pytest.raises(ValueError) as exc:
        RepoMapper(
            [{"pattern": "/a"}, {"regex": "("}, {"regex": "x"}, {"pattern": "/a", "regex": "b", "repo": "r"}, "nope"]
        )
    text = str(exc.value)
    for fragment in ("rule 0", "rule 1", "rule 2", "rule 3", "rule 4"):
        assert fragment in text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("git@github.com:acme/api.git", "https://github.com/acme/api"),
        ("https://github.com/acme/api.git", "https://github.com/acme/api"),
        ("https://user:tok@GitHub.com/acme/api", "https://github.com/acme/api"),
        ("ssh://git@gitlab.example.com:2222/team/svc.git", "https://gitlab.example.com/team/svc"),
        ("https://git.example.com:8443/team/svc.git", "https://git.example.com:8443/team/svc"),
    ],
)
def test_normalise_remote_url(url: str, expected: str):
    assert normalise_remote_url(url) == expected


def test_last_component():
    assert last_component("/a/b/") == "b"
    assert last_component("C:\\src\\api") == "api"
    assert last_component("https://github.com/acme/api.git") == "api"
