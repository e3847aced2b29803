"""paho-mqtt's network loop without ``select()``'s limit of 1,024 file descriptors.

paho-mqtt 2.x waits on its socket with ``select.select``, which cannot watch a descriptor numbered 1,024
or above: in a process that holds that many files and sockets (a long-running node, a test session) a new
client's socket gets such a number, ``select`` raises ``ValueError``, paho takes it for a lost connection
and tries again forever — the client never sends CONNECT and the caller sees only "no answer". Found when
the whole test suite's process passed 1,024 descriptors and every MQTT client made after that point timed
out.

:func:`install` gives paho's module a ``select`` whose ``select()`` waits with ``poll(2)`` instead (no
descriptor limit), with the same answers and the same errors (``ValueError`` for a closed socket's -1,
``TypeError`` for something that is not a descriptor) so paho's own error handling is unchanged. paho is
pinned in the locks; :func:`install` checks that the module still calls ``select.select`` the way this
shim expects and does nothing otherwise.
"""

from __future__ import annotations

import select as _select
import threading
from collections.abc import Sequence
from typing import Any

_lock = threading.Lock()
_installed = False

_READ = _select.POLLIN | _select.POLLPRI | _select.POLLHUP | _select.POLLERR | _select.POLLNVAL
_WRITE = _select.POLLOUT | _select.POLLHUP | _select.POLLERR | _select.POLLNVAL


def _fd(obj: Any) -> int:
    if isinstance(obj, int):
        fd = obj
    elif hasattr(obj, "fileno"):
        fd = int(obj.fileno())
    else:
        raise TypeError(f"argument must be an int, or have a fileno() method: {type(obj).__name__}")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def poll_select(
    rlist: Sequence[Any], wlist: Sequence[Any], xlist: Sequence[Any], timeout: float | None = None
) -> tuple[list[Any], list[Any], list[Any]]:
    """``select.select`` semantics for readable and writable objects, waiting with ``poll``."""
    poller = _select.poll()
    masks: dict[int, int] = {}
    for obj in rlist:
        fd = _fd(obj)
        masks[fd] = masks.get(fd, 0) | _select.POLLIN | _select.POLLPRI
    for obj in wlist:
        fd = _fd(obj)
        masks[fd] = masks.get(fd, 0) | _select.POLLOUT
    for fd, mask in masks.items():
        poller.register(fd, mask)
    ready = dict(poller.poll(None if timeout is None else max(0.0, timeout) * 1000.0))
    readable = [obj for obj in rlist if ready.get(_fd(obj), 0) & _READ]
    writable = [obj for obj in wlist if ready.get(_fd(obj), 0) & _WRITE]
    return readable, writable, []


class _SelectModule:
    """What paho's module uses of ``select``: its ``select`` function."""

    select = staticmethod(poll_select)

    def __getattr__(self, name: str) -> Any:
        return getattr(_select, name)


def install() -> bool:
    """Point paho-mqtt's client module at :func:`poll_select`; idempotent. Returns whether it is in place."""
    global _installed
    with _lock:
        if _installed:
            return True
        import inspect

        import paho.mqtt.client as paho_client

        if getattr(paho_client, "select", None) is not _select or "select.select(" not in inspect.getsource(
            paho_client.Client._loop
        ):
            return False  # a paho that waits some other way: leave it alone
        setattr(paho_client, "select", _SelectModule())  # noqa: B010 - replacing the module global paho reads
        _installed = True
        return True
