"""Attribution: which repo, branch and tags a call is charged to, and how we know.

The repo comes from the first source that names one, strongest first:

1. the ``x-spendgate-repo`` header (``header``);
2. a base-URL path prefix ``/t/repo=acme-api,branch=main,tags=ci+nightly/v1/...`` (``path-prefix``),
   for clients that can set only a base URL;
3. a model alias ``acme-api/claude-sonnet-4-6`` (``model-alias``), for clients that can set only a
   model name (Cursor's custom models);
4. a live Cursor hook window for the developer (``cursor-hook``, ``hook_window.py``);
5. the workspace path in the prompt, mapped by the configured rules (``prompt-workspace``,
   ``workspace.py``);
6. the default repo bound to the virtual key (``key-default``).

Every span records the source that won. The chain stops at the first hit, so a call that names its
repo in a header or prefix costs no alias split, hook lookup or prompt scan at all. The branch
follows the repo's source: the header's or prefix's branch when given, else the hook's branch when
the hook gave the repo (a hook's branch belongs to the hook's repo, so it is never paired with a
repo from another source).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

from spendgate_proxy.attribution.hook_window import HookAttribution, developer_of
from spendgate_proxy.attribution.model_alias import split_model_alias
from spendgate_proxy.attribution.workspace import RepoMapper, parse_workspace
from spendgate_semconv.attributes import RepoSource

if TYPE_CHECKING:
    from spendgate_proxy.keys import Principal

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
    repo_url: str | None = None
    """The repo's remote URL, when the source that named the repo knows it (a Cursor hook does)."""


class HookLookup(Protocol):
    """What the chain needs from the hook windows (``hook_window.HookWindows``)."""

    def lookup(self, user: str | None, now_ns: int) -> HookAttribution | None: ...


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


def resolve(
    headers: Mapping[str, str],
    prefix: Mapping[str, str],
    default_repo: str | None,
    *,
    alias_repo: str | None = None,
    hook: HookAttribution | None = None,
    workspace_repo: str | None = None,
) -> Attribution:
    """Combine the sources already looked up into one ``Attribution`` (strongest first).

    Pure and cheap; :meth:`RepoChain.resolve` is what the routes call, and looks up the costlier
    sources (hook window, prompt) only when no stronger one named the repo.
    """
    branch = headers.get(HEADER_BRANCH) or prefix.get("branch")
    repo_url = None
    repo = headers.get(HEADER_REPO)
    if repo:
        source = RepoSource.HEADER
    elif prefix.get("repo"):
        repo, source = prefix["repo"], RepoSource.PATH_PREFIX
    elif alias_repo:
        repo, source = alias_repo, RepoSource.MODEL_ALIAS
    elif hook is not None and hook.repo:
        repo, source = hook.repo, RepoSource.CURSOR_HOOK
        branch, repo_url = branch or hook.branch, hook.repo_url
    elif workspace_repo:
        repo, source = workspace_repo, RepoSource.PROMPT_WORKSPACE
    elif default_repo:
        repo, source = default_repo, RepoSource.KEY_DEFAULT
    else:
        repo, source = None, RepoSource.NONE
    tags = _tags(headers.get(HEADER_TAGS), ",") or _tags(prefix.get("tags"), "+")
    return Attribution(repo, source, branch, tags, repo_url)


class RepoChain:
    """The attribution chain of one proxy, built once at start: model names for aliases, the
    workspace mapping rules, and the live hook windows.

    ``prompt_workspace=False`` turns the prompt source off (the prompt is then never read).
    """

    def __init__(
        self,
        model_names: Iterable[str],
        *,
        workspace_rules: Iterable[Mapping[str, Any]] = (),
        prompt_workspace: bool = True,
        hooks: HookLookup | None = None,
    ) -> None:
        # A frozenset: split_model_alias caches the configured namespaces per immutable set, so the
        # request path never rescans the model list.
        self.known_models = frozenset(model_names)
        self.mapper = RepoMapper(workspace_rules)
        self.prompt_workspace = prompt_workspace
        self.hooks = hooks

    def split_model(self, model: str) -> tuple[str, str | None]:
        """``"acme-api/claude-sonnet-4-6"`` -> ``("claude-sonnet-4-6", "acme-api")``; anything else
        -> ``(model, None)``. The base model is what gets looked up, routed, priced and allow-checked."""
        if "/" not in model:  # the common case costs one scan of a short string
            return model, None
        split = split_model_alias(model, self.known_models)
        if split is None:
            return model, None
        return split[1], split[0]

    def resolve(
        self,
        headers: Mapping[str, str],
        prefix: Mapping[str, str],
        principal: Principal,
        *,
        now_ns: int,
        alias_repo: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Attribution:
        """The call's attribution. ``alias_repo`` comes from :meth:`split_model`; ``body`` is the
        already-parsed request body, read only when no header, prefix, alias or hook named the repo
        (and then only its first prompt texts)."""
        default = principal.repo
        if headers.get(HEADER_REPO) or prefix.get("repo") or alias_repo:
            return resolve(headers, prefix, default, alias_repo=alias_repo)
        hooks = self.hooks
        hook = hooks.lookup(developer_of(principal.user, principal.key_id), now_ns) if hooks is not None else None
        if hook is not None and hook.repo:
            return resolve(headers, prefix, default, hook=hook)
        workspace_repo = None
        if self.prompt_workspace and body is not None:
            workspace_repo = self.mapper.repo_for(parse_workspace(body))
        return resolve(headers, prefix, default, workspace_repo=workspace_repo)
