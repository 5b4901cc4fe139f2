"""Local stand-in for the Fakturownia and Sugester APIs.

The sandbox is a real HTTP server (two ports, one per vendor) seeded with
deterministic, realistically messy Polish data and fitted with fault knobs, so
that tests, demos and benchmarks exercise the sync over real sockets without
vendor accounts. Start it with ``python -m sandbox`` or, from Python, with
:class:`sandbox.process.SandboxProcess`.
"""

from __future__ import annotations

__all__ = ["SandboxProcess"]


def __getattr__(name: str) -> object:
    # Lazy so that ``python -m sandbox`` does not import the client-side helper.
    if name == "SandboxProcess":
        from sandbox.process import SandboxProcess

        return SandboxProcess
    raise AttributeError(name)
