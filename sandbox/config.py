"""Command-line settings of the sandbox server (``python -m sandbox --help``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sandbox.webhooks import DEFAULT_WEBHOOK_TOKEN, SYNCED_KINDS, WebhookTarget, parse_kinds

DEFAULT_FAKTUROWNIA_TOKEN = "fk-sandbox-token"
DEFAULT_SUGESTER_TOKEN = "sg-sandbox-token"


@dataclass(frozen=True)
class SandboxConfig:
    host: str = "127.0.0.1"
    fakturownia_port: int = 18081
    sugester_port: int = 18082
    seed: int = 42
    clients: int = 500
    invoices: int = 3000
    crm_clients: int = 150
    latency_ms: float = 0.0
    rpm: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    error_body_rate: float = 0.0
    rate_limit_rate: float = 0.0
    fakturownia_token: str = DEFAULT_FAKTUROWNIA_TOKEN
    sugester_token: str = DEFAULT_SUGESTER_TOKEN
    state_file: Path | None = None
    webhook_url: str | None = None
    webhook_token: str = DEFAULT_WEBHOOK_TOKEN
    webhook_kinds: frozenset[str] = frozenset(SYNCED_KINDS)
    webhook_drop_rate: float = 0.0

    def webhook_target(self) -> WebhookTarget:
        return WebhookTarget(self.webhook_url, self.webhook_token, self.webhook_kinds, self.webhook_drop_rate)

    def fault_knobs(self) -> dict[str, float]:
        return {
            "latency_ms": self.latency_ms,
            "rpm": self.rpm,
            "error_rate": self.error_rate,
            "drop_rate": self.drop_rate,
            "error_body_rate": self.error_body_rate,
            "rate_limit_rate": self.rate_limit_rate,
        }


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _kinds(text: str) -> frozenset[str]:
    try:
        return parse_kinds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    defaults = SandboxConfig()
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Local Fakturownia + Sugester API sandbox with seeded Polish data and fault knobs.",
    )
    add = parser.add_argument
    add("--host", default=defaults.host, help="interface to listen on")
    add("--fakturownia-port", type=_non_negative_int, default=defaults.fakturownia_port, help="0 picks a free port")
    add("--sugester-port", type=_non_negative_int, default=defaults.sugester_port, help="0 picks a free port")
    add("--seed", type=int, default=defaults.seed, help="same seed, same data")
    add("--clients", type=_non_negative_int, default=defaults.clients, help="Fakturownia clients to seed")
    add("--invoices", type=_non_negative_int, default=defaults.invoices, help="Fakturownia invoices to seed")
    add("--crm-clients", type=_non_negative_int, default=defaults.crm_clients, help="Sugester clients to seed")
    add("--latency-ms", type=_non_negative, default=defaults.latency_ms, help="delay added to every API request")
    add("--rpm", type=_non_negative, default=defaults.rpm, help="requests per minute per API (0: unlimited)")
    add("--error-rate", type=_rate, default=defaults.error_rate, help="share of requests answered 500/502/503")
    add("--drop-rate", type=_rate, default=defaults.drop_rate, help="share of requests cut off after the handler ran")
    add("--error-body-rate", type=_rate, default=defaults.error_body_rate, help="share answered 200 + error body")
    add("--rate-limit-rate", type=_rate, default=defaults.rate_limit_rate, help="share answered 429 at random")
    add("--fakturownia-token", default=defaults.fakturownia_token, help="api_token Fakturownia accepts")
    add("--sugester-token", default=defaults.sugester_token, help="api_token Sugester accepts")
    add("--state-file", type=Path, default=None, help="load state from here if it exists; save here on exit")
    add("--webhook-url", default=None, help="also POST Fakturownia webhooks here (besides registered webhooks)")
    add("--webhook-token", default=defaults.webhook_token, help="the webhook's own token, sent as api_token")
    add("--webhook-kinds", type=_kinds, default=defaults.webhook_kinds, help="comma-separated kinds for --webhook-url")
    add("--webhook-drop-rate", type=_rate, default=0.0, help="share of webhook deliveries lost on purpose")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> SandboxConfig:
    namespace = build_parser().parse_args(argv)
    return SandboxConfig(**vars(namespace))
