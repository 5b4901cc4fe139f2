"""Run both vendor APIs in one process: two uvicorn servers sharing one event loop.

When both ports listen, one JSON line with their URLs goes to stdout; that is
the handshake :class:`sandbox.process.SandboxProcess` waits for. SIGTERM and
SIGINT stop both servers and, with ``--state-file``, persist the data first
so a later start continues where this one left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from sandbox import conventions, fakturownia_api, seed, sugester_api
from sandbox.config import SandboxConfig
from sandbox.faults import FaultInjector, FaultKnobs, FaultMiddleware, SilenceDroppedResponses
from sandbox.stats import Stats
from sandbox.store import FakturowniaStore, SugesterStore
from sandbox.webhooks import WebhookDelivery

STATE_FORMAT = "fakturownia-sugester-sandbox/1"
SHUTDOWN_GRACE_SECONDS = 3

log = logging.getLogger("sandbox")


class _SharedLoopServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us.

    Each ``uvicorn.Server`` installs its own SIGINT/SIGTERM handlers and
    re-raises the signal on exit; with two servers in one loop they would
    fight over them, so the process installs one handler that stops both.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class StateFile:
    """Loads and saves the whole data store of both vendors as one JSON document."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        if self.path is None or not self.path.exists():
            return None
        with self.path.open(encoding="utf-8") as handle:
            document = json.load(handle)
        if document.get("format") != STATE_FORMAT:
            raise ValueError(f"{self.path} is not a sandbox state file")
        return document

    def save(self, fakturownia: FakturowniaStore, sugester: SugesterStore, seed_value: int) -> str | None:
        """Write atomically (temp file + rename) so a crash never leaves half a state file."""
        if self.path is None:
            return None
        document = {
            "format": STATE_FORMAT,
            "seed": seed_value,
            "fakturownia": fakturownia.to_state(),
            "sugester": sugester.to_state(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, ensure_ascii=False, separators=(",", ":"))
            os.replace(tmp_name, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        return str(self.path)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _uvicorn_config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        server_header=False,
    )


async def serve(config: SandboxConfig) -> int:
    """Seed or load, listen on both ports, announce the URLs, run until signalled."""
    state_file = StateFile(config.state_file)
    document = state_file.load()
    if document is None:
        seeded = seed.generate(config.seed, config.clients, config.invoices, config.crm_clients)
        fk_state, sg_state = seeded.fakturownia, seeded.sugester
    else:
        fk_state, sg_state = document["fakturownia"], document["sugester"]
    fakturownia = FakturowniaStore(fk_state, config.seed)
    sugester = SugesterStore(sg_state)
    # Seeded records live for the whole run: keep the collector from rescanning them.
    gc.collect()
    gc.freeze()

    async def save() -> str | None:
        return state_file.save(fakturownia, sugester, config.seed)

    fk_vendor = conventions.fakturownia(config.fakturownia_token)
    sg_vendor = conventions.sugester(config.sugester_token)
    knobs = FaultKnobs().updated(config.fault_knobs())
    fk_faults = FaultInjector(knobs, config.seed, fk_vendor.name)
    sg_faults = FaultInjector(knobs, config.seed, sg_vendor.name)
    fk_stats, sg_stats = Stats(), Stats()
    webhooks = WebhookDelivery(config.webhook_target(), config.seed, registered=fakturownia.active_webhooks)
    fk_app = fakturownia_api.create_app(fakturownia, fk_vendor, fk_faults, fk_stats, save, webhooks)
    sg_app = sugester_api.create_app(sugester, sg_vendor, sg_faults, sg_stats, save)

    try:
        fk_socket = _bind(config.host, config.fakturownia_port)
        sg_socket = _bind(config.host, config.sugester_port)
    except OSError as exc:
        print(f"sandbox: cannot listen on {config.host}: {exc}", file=sys.stderr, flush=True)
        return 2

    servers = [
        _SharedLoopServer(_uvicorn_config(FaultMiddleware(fk_app, fk_faults, fk_stats, fk_vendor))),
        _SharedLoopServer(_uvicorn_config(FaultMiddleware(sg_app, sg_faults, sg_stats, sg_vendor))),
    ]
    logging.getLogger("uvicorn.error").addFilter(SilenceDroppedResponses())

    def request_exit() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_exit)

    tasks = [
        asyncio.create_task(servers[0].serve(sockets=[fk_socket])),
        asyncio.create_task(servers[1].serve(sockets=[sg_socket])),
    ]
    while not all(server.started for server in servers):
        if any(task.done() for task in tasks):
            request_exit()
            await asyncio.gather(*tasks, return_exceptions=True)
            print("sandbox: a server failed to start", file=sys.stderr, flush=True)
            return 1
        await asyncio.sleep(0.01)
    announcement = {"fakturownia_url": _url(config.host, fk_socket), "sugester_url": _url(config.host, sg_socket)}
    sys.stdout.write(json.dumps(announcement) + "\n")
    sys.stdout.flush()

    await asyncio.gather(*tasks)
    if config.state_file is not None:
        await save()
    return 0


def run(config: SandboxConfig) -> int:
    """Run the sandbox on uvloop when available (it serves noticeably more requests per second)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(serve(config))
