"""Routing policy: which configured model serves a call, and what to try when it fails.

Ordered rules match the requested model, the feature, the principal (user, team, cost centre),
the repo and the estimated prompt size; the first match names a target, or several with weights
for gradual rollouts. The chosen target's fallbacks (``routing.fallbacks``) follow in order. A
target that answered with ``retry-after`` is skipped until it has cooled down (capped by
``retry_after_max_s``) unless nothing else is left, so the proxy honours the provider's request
without making the developer wait.

The prompt-size estimate is the body size in bytes / 4: free to compute, and close enough to
tell a short question from a 100K-token agent turn.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from spendgate_proxy.config import RoutingRule, RoutingSettings
from spendgate_semconv.scope import Scope

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
"""Upstream statuses after which the next target is tried (529: Anthropic's "overloaded")."""


class RoutingPolicy:
    """The configured rules and fallbacks, plus the cool-down state of targets that said retry-after."""

    def __init__(self, settings: RoutingSettings) -> None:
        self._rules: Sequence[RoutingRule] = settings.rules
        # Who and what a rule is for is a budget scope (the one rule, semconv's); a routing rule adds
        # the feature and the prompt-size bounds, and never names a key.
        self._scopes = [
            Scope(user=m.user, team=m.team, cost_center=m.cost_center, repo=m.repo, model=m.model)
            for m in (rule.match for rule in settings.rules)
        ]
        self._fallbacks = settings.fallbacks
        self._retry_after_max = settings.retry_after_max_s
        self._cooling: dict[str, float] = {}

    @staticmethod
    def needed(settings: RoutingSettings) -> bool:
        """False when there is nothing to decide: the request path then skips the policy entirely."""
        return bool(settings.rules or settings.fallbacks)

    def plan(
        self,
        model: str,
        *,
        feature: str | None,
        user: str | None,
        team: str | None,
        cost_center: str | None,
        repo: str | None,
        prompt_tokens: int,
    ) -> tuple[str | None, list[str]]:
        """The rule that matched (or None) and the models to try, in order."""
        rule_name, first = None, model
        for rule, scope in zip(self._rules, self._scopes, strict=True):
            m = rule.match
            if (
                scope.matches(user=user, team=team, cost_center=cost_center, repo=repo, key_id=None, model=model)
                and (m.feature is None or m.feature == feature)
                and (m.min_prompt_tokens is None or prompt_tokens >= m.min_prompt_tokens)
                and (m.max_prompt_tokens is None or prompt_tokens <= m.max_prompt_tokens)
            ):
                rule_name, first = rule.name, _pick(rule)
                break
        chain = [first]
        for name in self._fallbacks.get(first, ()):
            if name not in chain:
                chain.append(name)
        if len(chain) > 1 and self._cooling:
            now = time.monotonic()
            ready = [n for n in chain if self._cooling.get(n, 0.0) <= now]
            cooling = [n for n in chain if n not in ready]
            chain = ready + cooling  # cooling targets last: tried only if everything else fails
        return rule_name, chain

    def cool_down(self, model: str, retry_after: str | None) -> float:
        """Note a provider's retry-after for ``model``; returns the seconds honoured (0 when none)."""
        try:
            seconds = min(float(retry_after), self._retry_after_max) if retry_after else 0.0
        except ValueError:
            seconds = 0.0  # an HTTP-date: not worth parsing on the request path
        if seconds > 0:
            self._cooling[model] = time.monotonic() + seconds
        return seconds


def _pick(rule: RoutingRule) -> str:
    targets = rule.weighted()
    if len(targets) == 1:
        return targets[0].model
    return random.choices([t.model for t in targets], weights=[t.weight for t in targets])[0]
