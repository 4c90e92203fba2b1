"""Attribution overlays: which repo, branch and tags a call is charged to, and how we know.

Sources, strongest first, for clients that can send them: the ``x-spendgate-repo`` /
``x-spendgate-branch`` / ``x-spendgate-tags`` headers, then a base-URL path prefix
``/t/repo=acme-api,branch=main,tags=ci+nightly/v1/...`` (for clients that can set only a base URL),
then the default repo bound to the virtual key. Every span records the source that won.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from spendgate_semconv.attributes import RepoSource

HEADER_REPO = "x-spendgate-repo"
HEADER_BRANCH = "x-spendgate-branch"
HEADER_TAGS = "x-spendgate-tags"
_PREFIX_FIELDS = frozenset({"repo", "branch", "tags"})


@dataclass(frozen=True, slots=True)
class Attribution:
    """Where a call is charged: repo (+ how we know), branch and free-form tags."""

    repo: str | None = None
    repo_source: str = RepoSource.NONE
    branch: str | None = None
    tags: tuple[str, ...] = ()


def parse_path_prefix(segment: str) -> dict[str, str]:
    """``"repo=acme-api,branch=main"`` -> ``{"repo": "acme-api", "branch": "main"}``.

    Raises ``ValueError`` naming the bad part, so a mistyped base URL fails loudly instead of
    silently charging the wrong repo.
    """
    out: dict[str, str] = {}
    for part in filter(None, segment.split(",")):
        name, sep, value = part.partition("=")
        if not sep or name not in _PREFIX_FIELDS or not value:
            raise ValueError(
                f"bad attribution prefix {part!r}: expected name=value with name one of repo, branch, tags"
            )
        out[name] = unquote(value)
    return out


def _tags(value: str | None, sep: str) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(t.strip() for t in value.split(sep) if t.strip())


def resolve(headers: Mapping[str, str], prefix: dict[str, str], default_repo: str | None) -> Attribution:
    """Combine headers, path prefix and the key's default into one ``Attribution``."""
    repo = headers.get(HEADER_REPO)
    if repo:
        source = RepoSource.HEADER
    elif prefix.get("repo"):
        repo, source = prefix["repo"], RepoSource.PATH_PREFIX
    elif default_repo:
        repo, source = default_repo, RepoSource.KEY_DEFAULT
    else:
        repo, source = None, RepoSource.NONE
    branch = headers.get(HEADER_BRANCH) or prefix.get("branch")
    tags = _tags(headers.get(HEADER_TAGS), ",") or _tags(prefix.get("tags"), "+")
    return Attribution(repo, source, branch, tags)
