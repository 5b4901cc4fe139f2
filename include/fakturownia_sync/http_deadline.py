"""A hard deadline for one HTTP attempt: connect, send and the whole answer, or the connection is cut.

`requests` only offers socket timeouts, and a read timeout restarts on every byte: a server (or a proxy) that
trickles one byte every few seconds holds a request open for ever. Why that matters for duplicates is told in
`timing`. Here a watchdog timer runs beside each attempt; when it fires it shuts the attempt's socket down, which
makes the blocked read in the sending thread return at once, and the attempt fails with whatever error the HTTP
stack raises for a cut connection. The transport then asks the watch whether it expired (and whether the request
was sent) and decides by that, not by the error's type.

The watch knows the attempt's connection because the connection classes of our pools report to the watch of the
current thread when they connect and when they send. A connection given back to the pool is released from its
watch first, so a late watchdog can never cut a connection another thread has since taken from the pool.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()
_lock = threading.Lock()


def _cut(conn: HTTPConnection) -> None:
    # http.client drops `conn.sock` once the response owns the socket; the socket we kept is still that one.
    sock = getattr(conn, "sock", None) or getattr(conn, "_deadline_sock", None)
    if sock is None:
        return
    # The plain socket's shutdown, also for TLS: it unblocks a reader without touching the TLS state.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class AttemptWatch:
    """The deadline of one attempt, as a context manager around the call that sends it (one thread)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = max(0.0, seconds)
        self.expired = False
        self.sent = False
        self.watched = False
        self._done = False
        self._connections: list[HTTPConnection] = []
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> AttemptWatch:
        _current.watch = self
        self._timer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        with _lock:
            self._done = True
        self._timer.cancel()
        _current.watch = None

    def _expire(self) -> None:
        with _lock:
            if self._done:
                return
            self.expired = True
            for conn in self._connections:
                if getattr(conn, "_deadline_watch", None) is self:
                    _cut(conn)

    def _claim(self, conn: HTTPConnection, *, sending: bool) -> None:
        with _lock:
            conn._deadline_watch = self  # type: ignore[attr-defined]
            self.watched = True
            if sending:
                self.sent = True
            if conn not in self._connections:
                self._connections.append(conn)
            if self.expired:
                _cut(conn)


def _watch_of_this_thread() -> AttemptWatch | None:
    return getattr(_current, "watch", None)


class _WatchedConnectionMixin:
    def connect(self) -> None:
        watch = _watch_of_this_thread()
        if watch is not None:
            watch._claim(self, sending=False)  # type: ignore[arg-type]
        super().connect()  # type: ignore[misc]
        self._deadline_sock = self.sock  # type: ignore[attr-defined]
        if watch is not None and watch.expired:
            _cut(self)  # type: ignore[arg-type]

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch = _watch_of_this_thread()
        if watch is not None:
            watch._claim(self, sending=True)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]
        self._deadline_sock = self.sock  # type: ignore[attr-defined]
        if watch is not None and watch.expired:
            _cut(self)  # type: ignore[arg-type]


class _WatchedHTTPConnection(_WatchedConnectionMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnectionMixin, HTTPSConnection):
    pass


def _release(conn: Any) -> None:
    if conn is not None:
        with _lock:
            conn._deadline_watch = None


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection

    def _put_conn(self, conn: Any) -> None:
        _release(conn)
        super()._put_conn(conn)


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _put_conn(self, conn: Any) -> None:
        _release(conn)
        super()._put_conn(conn)


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """An `HTTPAdapter` whose connections obey the `AttemptWatch` of the thread that uses them."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager
