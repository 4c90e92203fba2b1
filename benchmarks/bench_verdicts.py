"""Benchmark: ns per ``ControlState.verdict_for`` and ``budget_for`` call, the budget checks on the request path.

Run ``python benchmarks/bench_verdicts.py`` (about 2 s; ``--quick`` for a smoke run). A runner calls
``main(quick)``, which returns the results as a dict. The state holds 0, 10 or 200 verdicts in force,
shaped like a real organisation's: mostly team- and repo-scoped pauses, some per-developer caps, a
few model routes and one org-wide route, none of which match the calling developers (the common case:
the check runs and lets the call through), plus one pause that matches a few of them. The callers
are a rotating set of developers in 20 teams and 50 repos asking for a handful of models.

``budget_for`` (the tightest budget a call is within, for the ``x-spendgate-budget*`` response
headers) is measured the same way with 0, 10 or 200 budget states held: one budget per team, the
rest on repos and developers of which a few match, and one org-wide budget, so every caller is
within one to three budgets (the common case once budgets exist).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from spendgate_proxy.control.state import ControlState
from spendgate_proxy.keys import Principal
from spendgate_semconv import control_pb2

SIZES = (0, 10, 200)
CALLERS = 1_000
MODELS = ("claude-sonnet-4-5", "gpt-5", "gpt-4.1", "o4-mini", "gemini-2.5-pro")


def _verdicts(count: int, rng: random.Random) -> list[control_pb2.Verdict]:
    out = []
    for i in range(count):
        kind = rng.random()
        scope = control_pb2.Scope()
        action = control_pb2.Verdict.PAUSE
        route_from = route_to = ""
        if kind < 0.4:
            scope.team = f"other-team-{i}"
        elif kind < 0.7:
            scope.repo = f"other-repo-{i}"
        elif kind < 0.85:
            scope.user = f"someone-{i}@acme.example"
        elif kind < 0.95:
            scope.team, action = f"other-team-{i}", control_pb2.Verdict.ROUTE
            route_from, route_to = "claude-opus-4-1", "claude-sonnet-4-5"
        else:
            action, route_from, route_to = control_pb2.Verdict.ROUTE, "gpt-4.5", "gpt-4.1"  # org-wide
        out.append(
            control_pb2.Verdict(
                id=f"v{i}",
                action=action,
                scope=scope,
                budget_id=f"b{i}",
                since_ms=i,
                route_from=route_from,
                route_to=route_to,
            )
        )
    if count:  # one budget that is really over: team-3 on repo-7
        out[-1] = control_pb2.Verdict(
            id="hit", action=control_pb2.Verdict.PAUSE, scope=control_pb2.Scope(team="team-3", repo="repo-7")
        )
    return out


def _state(count: int, rng: random.Random) -> ControlState:
    state = ControlState()
    state.apply(control_pb2.ControlUpdate(version=1, epoch=1, snapshot=True, verdicts_upsert=_verdicts(count, rng)))
    return state


def _budget_states(count: int, rng: random.Random) -> list[control_pb2.BudgetState]:
    out = []
    for i in range(count):
        scope = control_pb2.Scope()
        if i == 0:
            pass  # org-wide
        elif i <= 20:
            scope.team = f"team-{i - 1}"
        elif i % 2:
            scope.repo = f"repo-{rng.randrange(200)}"  # a quarter of them are repos callers use
        else:
            scope.user = f"dev-{rng.randrange(4_000)}@acme.example"
        out.append(
            control_pb2.BudgetState(
                budget_id=f"b{i}",
                scope=scope,
                limit_usd=1_000.0,
                spend_usd=rng.uniform(0, 900),
                period_start_ms=1,
                period_end_ms=4_102_444_800_000,
                state="ok",
            )
        )
    return out


def _budget_state(count: int, rng: random.Random) -> ControlState:
    state = ControlState()
    update = control_pb2.ControlUpdate(version=1, epoch=1, snapshot=True, budgets_upsert=_budget_states(count, rng))
    state.apply(update)
    return state


def _callers(rng: random.Random) -> list[tuple[Principal, str, str]]:
    return [
        (
            Principal(f"key_{i}", f"dev-{i}@acme.example", team=f"team-{i % 20}", cost_center=f"CC-{i % 7}"),
            f"repo-{rng.randrange(50)}",
            rng.choice(MODELS),
        )
        for i in range(CALLERS)
    ]


def _ns_per_call(
    check: Callable[..., object], callers: list[tuple[Principal, str, str]], calls: int, rounds: int
) -> float:
    batch = (callers * (calls // len(callers) + 1))[:calls]
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for principal, repo, model in batch:
            check(principal, repo, model)
        samples.append((time.perf_counter_ns() - start) / calls)
    return statistics.median(samples)


def main(quick: bool = False) -> dict[str, Any]:
    rng = random.Random(7)
    callers = _callers(rng)
    calls, rounds = (5_000, 3) if quick else (200_000, 7)
    results: dict[str, Any] = {
        "calls_per_round": calls,
        "rounds": rounds,
        "ns_per_call": {},
        "hits": {},
        "budget_for_ns_per_call": {},
        "budget_hits": {},
    }
    for size in SIZES:
        state = _state(size, rng)
        results["ns_per_call"][str(size)] = round(_ns_per_call(state.verdict_for, callers, calls, rounds), 1)
        results["hits"][str(size)] = sum(state.verdict_for(p, r, m) is not None for p, r, m in callers)
    for size in SIZES:
        state = _budget_state(size, rng)
        results["budget_for_ns_per_call"][str(size)] = round(_ns_per_call(state.budget_for, callers, calls, rounds), 1)
        results["budget_hits"][str(size)] = sum(state.budget_for(p, r, m) is not None for p, r, m in callers)
    lines = [f"verdict_for, median ns per call over {rounds} rounds of {calls} calls:"]
    for size in SIZES:
        key = str(size)
        lines.append(
            f"  {size:>4} verdicts in force: {results['ns_per_call'][key]:>8.1f} ns"
            f"  ({results['hits'][key]} of {CALLERS} callers matched)"
        )
    lines.append(f"budget_for (response headers), median ns per call over {rounds} rounds of {calls} calls:")
    for size in SIZES:
        key = str(size)
        lines.append(
            f"  {size:>4} budgets held:       {results['budget_for_ns_per_call'][key]:>8.1f} ns"
            f"  ({results['budget_hits'][key]} of {CALLERS} callers within a budget)"
        )
    results["report"] = "\n".join(lines)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few thousand calls: checks it runs")
    print(main(parser.parse_args().quick)["report"])
    sys.exit(0)
