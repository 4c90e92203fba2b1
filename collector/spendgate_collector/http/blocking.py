"""Run a blocking call (SQLite, the keys file) on an executor from a request handler.

The API routes and dashboard pages never block the event loop: every store, engine and key-service
call goes through ``run_blocking`` on the API's thread pool.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")


async def run_blocking(executor: Executor | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on ``executor`` (the loop's default one when ``None``), awaited."""
    # run_in_executor passes no keyword arguments, hence the partial.
    call = functools.partial(fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor, call)
