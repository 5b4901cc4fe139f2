"""Start and drive a sandbox server from Python (tests, demo, benchmarks).

The sandbox runs as a child process, ``python -m sandbox``, so callers talk
to it over real sockets exactly as the sync talks to the vendors. Its stderr
goes to a log file (never an unread pipe, which would eventually block it);
stdout carries only the one-line handshake with the two URLs.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import requests

from sandbox.config import DEFAULT_FAKTUROWNIA_TOKEN, DEFAULT_SUGESTER_TOKEN

REPO_ROOT = Path(__file__).resolve().parent.parent
APIS = ("fakturownia", "sugester")


class SandboxStartError(RuntimeError):
    """The sandbox exited or stayed silent before announcing its URLs."""


class SandboxProcess:
    """A running sandbox server; a context manager that stops it on exit.

    The process starts in the constructor (like ``subprocess.Popen``), so both
    ``with SandboxProcess(...) as sandbox:`` and a plain instance work.
    """

    def __init__(
        self,
        seed: int = 42,
        clients: int = 500,
        invoices: int = 3000,
        crm_clients: int = 150,
        latency_ms: float = 0,
        rpm: float = 0,
        error_rate: float = 0.0,
        drop_rate: float = 0.0,
        error_body_rate: float = 0.0,
        rate_limit_rate: float = 0.0,
        state_file: str | os.PathLike[str] | None = None,
        fakturownia_port: int = 0,
        sugester_port: int = 0,
        extra_args: Sequence[str] = (),
        *,
        host: str = "127.0.0.1",
        fakturownia_token: str = DEFAULT_FAKTUROWNIA_TOKEN,
        sugester_token: str = DEFAULT_SUGESTER_TOKEN,
        startup_timeout: float = 60.0,
        log_path: str | os.PathLike[str] | None = None,
        webhook_url: str | None = None,
        webhook_token: str | None = None,
        webhook_drop_rate: float = 0.0,
    ) -> None:
        self.fakturownia_token = fakturownia_token
        self.sugester_token = sugester_token
        self.state_file = Path(state_file) if state_file is not None else None
        self.startup_timeout = startup_timeout
        self.fakturownia_url = ""
        self.sugester_url = ""
        self.log_path = Path(log_path) if log_path is not None else None
        self._args = [
            "--host", host,
            "--fakturownia-port", str(fakturownia_port),
            "--sugester-port", str(sugester_port),
            "--seed", str(seed),
            "--clients", str(clients),
            "--invoices", str(invoices),
            "--crm-clients", str(crm_clients),
            "--latency-ms", str(latency_ms),
            "--rpm", str(rpm),
            "--error-rate", str(error_rate),
            "--drop-rate", str(drop_rate),
            "--error-body-rate", str(error_body_rate),
            "--rate-limit-rate", str(rate_limit_rate),
            "--fakturownia-token", fakturownia_token,
            "--sugester-token", sugester_token,
        ]  # fmt: skip
        if self.state_file is not None:
            self._args += ["--state-file", str(self.state_file)]
        if webhook_url is not None:
            self._args += ["--webhook-url", webhook_url]
        if webhook_token is not None:
            self._args += ["--webhook-token", webhook_token]
        if webhook_drop_rate:
            self._args += ["--webhook-drop-rate", str(webhook_drop_rate)]
        self._args += list(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._own_log = log_path is None
        self._session = requests.Session()
        self.start()

    # -- lifecycle -----------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Launch the server and wait for its URLs; a no-op while it runs."""
        if self.running:
            return
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="sandbox-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", *self._args],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        try:
            announcement = self._read_announcement()
        except BaseException:
            self.stop()
            raise
        self.fakturownia_url = announcement["fakturownia_url"]
        self.sugester_url = announcement["sugester_url"]

    def _read_announcement(self) -> dict[str, str]:
        assert self._process is not None and self._process.stdout is not None
        stream = self._process.stdout
        deadline = time.monotonic() + self.startup_timeout
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stream, selectors.EVENT_READ)
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SandboxStartError(f"no announcement within {self.startup_timeout} s; {self._log_tail()}")
                if not selector.select(remaining):
                    continue
                chunk = os.read(stream.fileno(), 4096)
                if not chunk:
                    code = self._process.wait()
                    raise SandboxStartError(f"sandbox exited with {code} before starting; {self._log_tail()}")
                buffer += chunk
        line = buffer.split(b"\n", 1)[0]
        try:
            return json.loads(line)
        except ValueError:
            raise SandboxStartError(f"unexpected first line {line!r}; {self._log_tail()}") from None

    def _log_tail(self, limit: int = 2000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "no log"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return f"log {self.log_path}: {text[-limit:]}"

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the server saves its state file then), wait, and kill if it hangs."""
        process = self._process
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            code = process.returncode
            if process.stdout is not None:
                process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
            # A temporary log with nothing in it is not worth keeping around.
            if self._own_log and self.log_path is not None and self.log_path.stat().st_size == 0:
                self.log_path.unlink()
        self._session.close()
        return code

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- control API ---------------------------------------------------------

    def url(self, api: str) -> str:
        if api == "fakturownia":
            return self.fakturownia_url
        if api == "sugester":
            return self.sugester_url
        raise ValueError(f"api must be one of {APIS}, not {api!r}")

    def token(self, api: str) -> str:
        self.url(api)
        return self.fakturownia_token if api == "fakturownia" else self.sugester_token

    def _control(self, method: str, api: str, path: str, payload: object = None, timeout: float = 60.0) -> Any:
        response = self._session.request(method, f"{self.url(api)}/_sandbox/{path}", json=payload, timeout=timeout)
        response.raise_for_status()
        return response.json()

    def set_faults(self, api: str | None = None, **knobs: float) -> dict[str, Any]:
        """Change fault knobs (latency_ms, rpm, error_rate, drop_rate, error_body_rate,
        rate_limit_rate).

        Returns the resulting knobs of ``api``, or ``{api: knobs}`` for both when ``api`` is None.
        """
        if api is not None:
            return self._control("POST", api, "faults", knobs)
        return {name: self._control("POST", name, "faults", knobs) for name in APIS}

    def faults(self, api: str) -> dict[str, Any]:
        return self._control("GET", api, "faults")

    def stats(self, api: str) -> dict[str, Any]:
        return self._control("GET", api, "stats")

    def reset_stats(self, api: str | None = None) -> None:
        for name in (api,) if api is not None else APIS:
            self._control("POST", name, "stats/reset")

    def webhooks(self) -> dict[str, Any]:
        """Webhook deliveries so far (queued, delivered, dropped, failed, pending) and the command-line receiver."""
        return self._control("GET", "fakturownia", "webhooks")

    def set_webhooks(self, **settings: Any) -> dict[str, Any]:
        """Change the command-line webhook receiver at run time: url, token, kinds, drop_rate."""
        return self._control("POST", "fakturownia", "webhooks", settings)

    def dump(self, api: str) -> dict[str, Any]:
        return self._control("GET", api, "dump", timeout=300.0)

    def save(self) -> str:
        """Write the state file now (both vendors); returns its path."""
        return self._control("POST", "fakturownia", "save", timeout=300.0)["path"]
