"""What a running scheduler's jobs need, found by name.

Jobs in the database job store are pickled as a function reference plus plain arguments, so they cannot
carry the context (an engine, a blob store). They carry the scheduler's name instead and look the live
:class:`Runtime` up here; only the leader process runs them, and it registered its runtime first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from oracle.context import Context
from oracle.errors import ConfigError
from oracle.scheduler.options import SchedulerOptions

_lock = threading.Lock()
_runtimes: dict[str, Runtime] = {}


@dataclass
class Runtime:
    ctx: Context
    options: SchedulerOptions
    #: The APScheduler instance (typed loosely: apscheduler ships no type hints).
    scheduler: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


def register(runtime: Runtime) -> None:
    with _lock:
        _runtimes[runtime.options.name] = runtime


def unregister(name: str, runtime: Runtime) -> None:
    with _lock:
        if _runtimes.get(name) is runtime:
            del _runtimes[name]


def lookup(name: str) -> Runtime:
    """The live runtime called ``name``; :raises ConfigError: none in this process."""
    with _lock:
        found = _runtimes.get(name)
    if found is None:
        raise ConfigError(f"no scheduler runtime named {name!r} in this process")
    return found
