"""The init phase of a handler module: its imports run with the cyclic garbage collector paused, and what
they created is then frozen out of every later collection.

Almost everything a handler's imports create (modules, classes, pydantic schemas, botocore models) lives as
long as the execution environment. While they load, the collector keeps walking that growing heap and finds
next to nothing to free: on python3.13 this is about 8 % of the remediation function's init. After the
imports, `gc.freeze()` moves those objects to the permanent generation, so the full collections of later
invocations no longer walk them either (CPython documents freeze() for long-lived start-up objects). The
few cycles that became garbage during the imports stay allocated: a few hundred objects, measured.

A Lambda execution environment imports its handler once. A process that loads handlers again (the
offline runtime loads them for every emulated organization, so every test) freezes only the first time,
so that what later loads leave behind can still be collected.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_frozen_once: list[bool] = []


@contextmanager
def init_phase() -> Iterator[None]:
    """Wrap a handler module's imports: `with init_phase(): import ...`. The collector is enabled again
    afterwards, also when an import fails, unless it was already disabled before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        if not _frozen_once:
            gc.freeze()
            _frozen_once.append(True)
    finally:
        if was_enabled:
            gc.enable()
