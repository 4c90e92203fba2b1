"""spendgate.context: attribute() blocks, decorators, nesting, asyncio tasks, threads and baggage."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry import baggage
from opentelemetry import context as otel_context

import spendgate
from spendgate.context import (
    Attribution,
    attribution_from_baggage,
    current_attribution,
    local_attribution,
    make_attribution,
    set_baggage_propagation,
)


def test_outside_any_block_there_is_no_attribution() -> None:
    assert current_attribution() is None


def test_block_sets_and_restores() -> None:
    with spendgate.attribute(user="ana@acme.com", repo="acme-api", feature="rag") as merged:
        assert Attribution(user="ana@acme.com", repo="acme-api", feature="rag") == merged
        assert merged == current_attribution()
    assert current_attribution() is None


def test_nested_blocks_override_field_by_field_and_union_tags() -> None:
    with spendgate.attribute(user="ana@acme.com", team="search", repo="acme-api", tags=["batch"]):
        with spendgate.attribute(repo="acme-web", feature="rag", tags=["nightly", "batch"]):
            assert (
                Attribution(
                    user="ana@acme.com",
                    team="search",
                    repo="acme-web",
                    feature="rag",
                    tags=("batch", "nightly"),
                )
                == current_attribution()
            )
        assert Attribution(user="ana@acme.com", team="search", repo="acme-api", tags=("batch",)) == (
            current_attribution()
        )


def test_none_and_empty_strings_inherit() -> None:
    with spendgate.attribute(user="ana@acme.com"), spendgate.attribute(user=None, team=""):
        assert Attribution(user="ana@acme.com") == current_attribution()


def test_bad_types_are_refused_at_the_call_site() -> None:
    with pytest.raises(TypeError, match="'user' must be a str"):
        spendgate.attribute(user=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tags must be strings"):
        spendgate.attribute(tags=["ok", 3])  # type: ignore[list-item]


def test_a_bare_string_is_one_tag() -> None:
    assert make_attribution(tags="nightly").tags == ("nightly",)


def test_exceptions_propagate_and_the_block_still_exits() -> None:
    with pytest.raises(RuntimeError), spendgate.attribute(user="ana@acme.com"):
        raise RuntimeError("boom")
    assert current_attribution() is None


def test_sync_decorator_applies_per_call() -> None:
    @spendgate.attribute(feature="summarise")
    def work(x: int) -> tuple[int, Attribution | None]:
        return x * 2, current_attribution()

    assert (4, Attribution(feature="summarise")) == work(2)
    assert work.__name__ == "work"
    with spendgate.attribute(user="ana@acme.com"):
        assert (2, Attribution(user="ana@acme.com", feature="summarise")) == work(1)
    assert current_attribution() is None


def test_async_decorator_and_async_with() -> None:
    @spendgate.attribute(feature="agent")
    async def work() -> Attribution | None:
        await asyncio.sleep(0)
        return current_attribution()

    async def main() -> tuple[Attribution | None, Attribution | None]:
        async with spendgate.attribute(user="ana@acme.com"):
            inside = await work()
        return inside, current_attribution()

    assert (Attribution(user="ana@acme.com", feature="agent"), None) == asyncio.run(main())


def test_generators_cannot_be_decorated() -> None:
    with pytest.raises(TypeError, match="generator"):

        @spendgate.attribute(feature="agent")
        def gen():  # type: ignore[no-untyped-def]
            yield 1

    with pytest.raises(TypeError, match="generator"):

        @spendgate.attribute(feature="agent")
        async def agen():  # type: ignore[no-untyped-def]
            yield 1


def test_concurrent_asyncio_tasks_keep_their_own_attribution() -> None:
    # Each task enters its own block and yields many times while the others run: nothing leaks.
    async def one(user: str) -> list[str | None]:
        seen = []
        async with spendgate.attribute(user=user):
            for _ in range(20):
                await asyncio.sleep(0)
                a = current_attribution()
                seen.append(a.user if a else None)
        return seen

    async def main() -> list[list[str | None]]:
        return await asyncio.gather(*(one(f"dev{i}@acme.com") for i in range(10)))

    for i, seen in enumerate(asyncio.run(main())):
        assert [f"dev{i}@acme.com"] * 20 == seen


def test_tasks_inherit_the_attribution_current_at_creation() -> None:
    async def child() -> Attribution | None:
        return current_attribution()

    async def main() -> tuple[Attribution | None, Attribution | None]:
        with spendgate.attribute(user="ana@acme.com"):
            task = asyncio.create_task(child())
        # Created inside the block, run after it closed: still the block's attribution.
        late = await task
        return late, await asyncio.create_task(child())

    assert (Attribution(user="ana@acme.com"), None) == asyncio.run(main())


def test_plain_threads_start_without_attribution() -> None:
    # What docs/sdk.md says: a new thread (or pool worker) has an empty context.
    seen: list[Attribution | None] = []
    with spendgate.attribute(user="ana@acme.com"):
        t = threading.Thread(target=lambda: seen.append(current_attribution()))
        t.start()
        t.join()
        with ThreadPoolExecutor(1) as pool:
            seen.append(pool.submit(current_attribution).result())
    assert seen == [None, None]


def test_copy_context_carries_attribution_into_a_thread() -> None:
    with spendgate.attribute(user="ana@acme.com"), ThreadPoolExecutor(2) as pool:
        ctx = contextvars.copy_context()
        got = pool.submit(ctx.run, current_attribution).result()
    assert Attribution(user="ana@acme.com") == got


def test_otel_context_attach_carries_attribution_into_a_thread() -> None:
    def worker(ctx: otel_context.Context) -> Attribution | None:
        token = otel_context.attach(ctx)
        try:
            return current_attribution()
        finally:
            otel_context.detach(token)

    with spendgate.attribute(user="ana@acme.com"), ThreadPoolExecutor(1) as pool:
        got = pool.submit(worker, otel_context.get_current()).result()
    assert Attribution(user="ana@acme.com") == got


def test_asyncio_to_thread_copies_the_context_and_run_in_executor_does_not() -> None:
    async def main() -> tuple[Attribution | None, Attribution | None]:
        with spendgate.attribute(user="ana@acme.com"):
            copied = await asyncio.to_thread(current_attribution)
            with ThreadPoolExecutor(1) as pool:
                not_copied = await asyncio.get_running_loop().run_in_executor(pool, current_attribution)
        return copied, not_copied

    assert asyncio.run(main()) == (Attribution(user="ana@acme.com"), None)


def test_concurrent_threads_do_not_leak() -> None:
    barrier = threading.Barrier(8)

    def one(i: int) -> list[str | None]:
        seen = []
        with spendgate.attribute(user=f"dev{i}@acme.com"):
            barrier.wait()  # every thread is inside its block at once
            for _ in range(200):
                a = current_attribution()
                seen.append(a.user if a else None)
        return seen

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    for i, seen in enumerate(results):
        assert {f"dev{i}@acme.com"} == set(seen)


def test_blocks_write_w3c_baggage() -> None:
    with spendgate.attribute(user="ana@acme.com", repo="acme-api", tags=["a", "b"]), spendgate.attribute(feature="rag"):
        entries = dict(baggage.get_all())
    assert entries == {
        "spendgate.user": "ana@acme.com",
        "spendgate.repo": "acme-api",
        "spendgate.feature": "rag",
        "spendgate.tags": "a,b",
    }


def test_baggage_is_the_fallback_and_blocks_build_on_it() -> None:
    incoming = baggage.set_baggage("spendgate.user", "ana@acme.com")
    incoming = baggage.set_baggage("spendgate.tags", " a , b,a", incoming)
    incoming = baggage.set_baggage("other", "kept", incoming)
    token = otel_context.attach(incoming)
    try:
        assert local_attribution() is None
        assert Attribution(user="ana@acme.com", tags=("a", "b")) == current_attribution()
        with spendgate.attribute(feature="rag"):
            assert Attribution(user="ana@acme.com", feature="rag", tags=("a", "b")) == current_attribution()
            assert baggage.get_baggage("other") == "kept"
    finally:
        otel_context.detach(token)


def test_long_baggage_values_are_cut() -> None:
    ctx = baggage.set_baggage("spendgate.user", "x" * 10_000)
    a = attribution_from_baggage(ctx)
    assert a is not None
    assert len(a.user or "") == 256


def test_baggage_propagation_can_be_switched_off() -> None:
    set_baggage_propagation(False)
    try:
        with spendgate.attribute(user="ana@acme.com"):
            assert dict(baggage.get_all()) == {}
            assert Attribution(user="ana@acme.com") == current_attribution()
    finally:
        set_baggage_propagation(True)
