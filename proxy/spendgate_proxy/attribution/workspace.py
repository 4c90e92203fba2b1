"""Repo from the prompt: the workspace path Cursor writes into its system prompt, mapped to a repo.

Cursor-style prompts carry a ``<user_info>`` block with a sentence such as "The absolute path of the
user's workspace is /Users/jane/src/acme-api." (older prompts), a ``Workspace Path: ...`` line
(newer ones), or a list when several folders are open. Privacy mode may drop or redact the path;
then there is nothing to parse and :func:`parse_workspace` returns ``None``. All of this is
reported, not specified (docs/cursor-attribution.md), so the parser is tolerant and never raises.

It runs on the request path, on bodies of up to 128K tokens, so it reads the already-parsed body
and looks only at the first few prompt texts (system / instructions / first user message), only at
their first :data:`DEFAULT_MAX_CHARS` characters, and finds the markers with ``str.find`` before
any regex runs on a small slice. The rest of the history is never touched.

:class:`RepoMapper` turns a :class:`WorkspaceInfo` into a repo name: ordered rules (a glob or a
regex on the path or the git remote URL) first, then the remote's last path component, then the
workspace folder's name.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

# The hook script is stdlib-only (it is copied into repos and runs without spendgate), so the
# library reuses its remote-URL rule rather than keeping a tested copy (review F9).
from spendgate_proxy.cursor.hook_script import normalise_remote_url

DEFAULT_MAX_CHARS = 64 * 1024
"""How much of each prompt text is searched. Cursor's system prompt (where ``<user_info>`` sits) is
a few KB to a few tens of KB; the tools are sent separately. Larger prompts are searched only here."""

_BLOCK_SPAN = 4096
"""How far past a marker the slice handed to the regexes reaches when no closing tag is found."""

_MAX_ITEMS = 3
"""How many leading ``messages`` / ``input`` items are looked at: system, developer, first user."""

_PROMPT_ROLES = (None, "system", "developer", "user")
"""Roles of the items whose text may carry the workspace."""

_OPEN_TAG = "<user_info>"
_CLOSE_TAG = "</user_info>"
# Markers tried (lower-cased text) when there is no <user_info> tag: cheap str.find, then regex.
_FALLBACK_MARKERS = ("user's workspace", "workspace path", "workspace folder", "workspace root")
_MARKER_TAILS = tuple(m.removeprefix("workspace") for m in _FALLBACK_MARKERS if m.startswith("workspace"))
"""What follows "workspace" in the markers that start with it (" path", " folder", " root")."""

# "The absolute path of the user's workspace is /a/b." / "The absolute paths of the user's
# workspaces are /a and /b." / "The user's workspace paths are: ..." / "Workspace Path: /a/b".
_SENTENCE_RE = re.compile(
    r"(?:(?:absolute\s+)?paths?\s+of\s+the\s+user['\u2019]?s?\s+workspaces?"
    r"|user['\u2019]?s?\s+workspace(?:\s+(?:paths?|folders?|roots?))?"
    r"|workspace\s+(?:paths?|folders?|roots?))"
    r"(?:\s+open)?\s*(?:is|are|:)\s*:?[ \t]*(?P<rest>[^\n]*(?:\n[ \t]*[-*•][^\n]*)*)",
    re.IGNORECASE,
)
# A remote URL, recognised only after the word "remote" (so a URL in prose is not mistaken for it).
_REMOTE_RE = re.compile(
    r"remote[^\n]{0,80}?(?P<url>(?:git@[\w.-]+:[\w./~-]+|(?:https?|ssh|git)://[^\s'\"<>`)]+))",
    re.IGNORECASE,
)
_WINDOWS_DRIVE_RE = re.compile(r"^/?([A-Za-z])(?::|%3A)[\\/]", re.IGNORECASE)
_REDACTED_RE = re.compile(r"^[\[<(]?(?:redacted|hidden|private|omitted|unknown|n/?a|none)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class WorkspaceInfo:
    """What the prompt says about the workspace: its roots (first = primary) and git remote, if any."""

    paths: tuple[str, ...] = ()
    repo_url: str | None = None
    found_in: str = ""
    """Which part of the body held it (``system``, ``instructions``, ``messages[1]``...), for debugging."""

    @property
    def path(self) -> str | None:
        """The primary workspace root, as Cursor lists it first (the hook script uses the same one)."""
        return self.paths[0] if self.paths else None


def parse_workspace(body: Mapping[str, Any], max_chars: int = DEFAULT_MAX_CHARS) -> WorkspaceInfo | None:
    """The workspace named in a Cursor request's prompt, or ``None`` (no path, privacy mode, not Cursor).

    Accepts the three body shapes Cursor posts: Chat Completions (``messages``), Responses-shaped
    (``instructions`` / ``input``) and Anthropic-shaped (``system`` blocks + ``messages``).
    """
    try:
        for key, index, text in _prompt_texts(body):
            block = _marked_block(text[:max_chars])
            if block is not None:
                # The label is built only here: most bodies name no workspace, and it is for debugging.
                info = _parse_block(block, key if index < 0 else f"{key}[{index}]")
                if info is not None:
                    return info
    except Exception:  # a malformed body must never fail the call: no attribution instead
        return None
    return None


def _prompt_texts(body: Mapping[str, Any]) -> Iterator[tuple[str, int, str]]:
    """The texts where Cursor puts ``<user_info>``, in order, without touching the rest of the history:
    ``(key, index in the list or -1, text)``."""
    for key in ("system", "instructions"):
        if key in body:
            text = _text_of(body[key])
            if text:
                yield key, -1, text
    for key in ("messages", "input"):
        items = body.get(key)
        if isinstance(items, str):
            yield key, -1, items
        elif isinstance(items, list):
            for i, item in enumerate(items[:_MAX_ITEMS]):
                # A dict first: the ABC check alone costs more than the rest of this test.
                if (type(item) is dict or isinstance(item, Mapping)) and item.get("role") in _PROMPT_ROLES:
                    text = _text_of(item.get("content"))
                    if text:
                        yield key, i, text


def _text_of(content: Any) -> str:
    """Text of a content value: a string, or the text parts of a block list (all three API shapes)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
        return "\n".join(parts)
    return ""


def _parse_block(block: str, where: str) -> WorkspaceInfo | None:
    paths = _paths_in(block)
    remote = _remote_in(block)
    if not paths and remote is None:
        return None
    return WorkspaceInfo(paths=paths, repo_url=remote, found_in=where)


def _marked_block(text: str) -> str | None:
    """The small slice worth running regexes on: the ``<user_info>`` block, else around a marker."""
    start = text.find(_OPEN_TAG)
    if start >= 0:
        end = text.find(_CLOSE_TAG, start)
        return text[start + len(_OPEN_TAG) : end if end >= 0 else start + _BLOCK_SPAN]
    first = _first_marker(text.lower())
    if first < 0:
        return None
    # Back up to the line start so "The absolute path of the user's workspace" is inside the slice.
    line_start = text.rfind("\n", 0, first) + 1
    return text[max(line_start, first - 200) : first + _BLOCK_SPAN]


def _first_marker(lowered: str) -> int:
    """Where the first of ``_FALLBACK_MARKERS`` starts in ``lowered``, or -1.

    Every marker contains "workspace", so one ``str.find`` pass over the text finds the candidates
    and each is checked in place: a third of the cost of one full search per marker, which matters
    for bodies that are not Cursor's (every prompt text is scanned to the end).
    """
    i = lowered.find("workspace")
    while i >= 0:
        if i >= 7 and lowered.startswith("user's ", i - 7):  # (a negative start would count from the end)
            return i - 7
        if lowered.startswith(_MARKER_TAILS, i + 9):
            return i
        i = lowered.find("workspace", i + 9)
    return -1


def _paths_in(block: str) -> tuple[str, ...]:
    match = _SENTENCE_RE.search(block)
    if match is None:
        return ()
    out: list[str] = []
    for raw in _split_paths(match.group("rest")):
        path = _normalise_path(raw)
        if path and path not in out:
            out.append(path)
    return tuple(out)


def _split_paths(rest: str) -> list[str]:
    """``"/a, /b and /c."`` or a bulleted list -> the separate path strings (trailing prose cut off)."""
    rest = rest.strip()
    lines = [ln.strip().lstrip("-*•").strip() for ln in rest.split("\n")]
    first = lines[0]
    items = [ln for ln in lines[1:] if ln]
    if first:
        # A path ends at a sentence end: ". " or a final ".". Dots inside names (proj.v2) are kept.
        first = re.split(r"\.(?:\s|$)", first, maxsplit=1)[0]
        pieces = re.split(r",\s+(?:and\s+)?|\s+and\s+|;\s*", first)
        items = [p for p in pieces if p.strip()] + items
    return items


def _normalise_path(raw: str) -> str | None:
    """Quotes, backticks, ``file://`` URIs and a trailing period off; ``None`` when it is no path."""
    path = raw.strip().strip("`'\"").strip().rstrip(".,;:").strip("`'\"")
    if not path or _REDACTED_RE.match(path):
        return None
    if path.lower().startswith("file://"):
        path = unquote(urlsplit(path).path)
        drive = _WINDOWS_DRIVE_RE.match(path)
        if drive:  # file:///c:/Users/... -> C:\Users\...
            path = drive.group(1).upper() + ":\\" + path[drive.end() :].replace("/", "\\")
    is_posix = path.startswith(("/", "~"))
    is_windows = bool(re.match(r"^[A-Za-z]:[\\/]", path)) or path.startswith("\\\\")
    if not (is_posix or is_windows):
        return None  # "hidden in privacy mode", "not available": prose, not a path
    if len(path) > 1:
        path = path.rstrip("/\\") or path
    return path


def _remote_in(block: str) -> str | None:
    if "remote" not in block.lower():
        return None
    match = _REMOTE_RE.search(block)
    return normalise_remote_url(match.group("url")) if match else None


def last_component(path_or_url: str) -> str | None:
    """The final name in a POSIX path, Windows path or URL (``C:\\src\\api`` -> ``api``)."""
    name = re.split(r"[\\/]", path_or_url.rstrip("/\\"))[-1]
    if name.endswith(".git"):
        name = name[:-4]
    return name or None


@dataclass(frozen=True, slots=True)
class RepoRule:
    """One mapping rule: a glob (``pattern``) or a regex (``regex``) on a workspace path or remote URL.

    ``repo`` may be omitted for a regex with a ``(?P<repo>...)`` group, which then names the repo.
    """

    repo: str | None
    pattern: str | None = None
    regex: re.Pattern[str] | None = None

    def match(self, subject: str) -> str | None:
        if self.regex is not None:
            m = self.regex.search(subject)
            if m is None:
                return None
            if self.repo:
                return self.repo
            return m.groupdict().get("repo") or None
        if self.pattern is not None and fnmatch.fnmatchcase(subject, self.pattern):
            return self.repo
        return None


class RepoMapper:
    """Workspace -> repo: rules in order (every root, then the remote URL), then the remote's name,
    then the first root's folder name.

    Rules are mappings ``{"pattern": "/Users/*/src/acme-api*", "repo": "acme-api"}`` (a glob, ``*``
    crossing ``/``; Windows paths are matched with ``/`` separators too) or ``{"regex":
    "github\\.com/acme/(?P<repo>[^/]+)$"}``. Invalid rules raise ``ValueError`` listing every problem.
    """

    def __init__(self, rules: Iterable[Mapping[str, Any] | RepoRule] = ()) -> None:
        self.rules: tuple[RepoRule, ...] = _compile_rules(rules)

    def repo_for(self, info: WorkspaceInfo | None) -> str | None:
        if info is None:
            return None
        subjects = [p.replace("\\", "/") for p in info.paths]
        if info.repo_url:
            subjects.append(info.repo_url)
        for subject in subjects:
            for rule in self.rules:
                repo = rule.match(subject)
                if repo:
                    return repo
        if info.repo_url:
            name = last_component(info.repo_url)
            if name:
                return name
        return last_component(info.paths[0]) if info.paths else None


def _compile_rules(rules: Iterable[Mapping[str, Any] | RepoRule]) -> tuple[RepoRule, ...]:
    out: list[RepoRule] = []
    problems: list[str] = []
    for i, rule in enumerate(rules):
        if isinstance(rule, RepoRule):
            out.append(rule)
            continue
        if not isinstance(rule, Mapping):
            problems.append(f"rule {i}: expected a mapping, got {type(rule).__name__}")
            continue
        unknown = set(rule) - {"pattern", "regex", "repo"}
        if unknown:
            problems.append(f"rule {i}: unknown keys {sorted(unknown)}")
        pattern, regex, repo = rule.get("pattern"), rule.get("regex"), rule.get("repo")
        if (pattern is None) == (regex is None):
            problems.append(f"rule {i}: give exactly one of 'pattern' (glob) or 'regex'")
            continue
        if repo is not None and (not isinstance(repo, str) or not repo.strip()):
            problems.append(f"rule {i}: 'repo' must be a non-empty string")
            continue
        if pattern is not None:
            if not isinstance(pattern, str) or not pattern:
                problems.append(f"rule {i}: 'pattern' must be a non-empty string")
            elif repo is None:
                problems.append(f"rule {i}: a 'pattern' rule needs 'repo'")
            else:
                out.append(RepoRule(repo=repo, pattern=pattern.replace("\\", "/")))
            continue
        try:
            compiled = re.compile(regex)
        except (re.error, TypeError) as exc:
            problems.append(f"rule {i}: bad regex {regex!r}: {exc}")
            continue
        if repo is None and "repo" not in compiled.groupindex:
            problems.append(f"rule {i}: a 'regex' rule needs 'repo' or a (?P<repo>...) group")
            continue
        out.append(RepoRule(repo=repo, regex=compiled))
    if problems:
        raise ValueError("invalid repo mapping rules: " + "; ".join(problems))
    return tuple(out)


__all__: Sequence[str] = (
    "DEFAULT_MAX_CHARS",
    "RepoMapper",
    "RepoRule",
    "WorkspaceInfo",
    "last_component",
    "normalise_remote_url",
    "parse_workspace",
)
