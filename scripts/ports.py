"""A free local port in a range: the fixed ranges keep the servers of a test, a benchmark or the scale-out run
apart from each other and from the demo's (18081/18082), and a port taken by something else is skipped."""

from __future__ import annotations

import socket


def free_port(ports: range) -> int:
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")
