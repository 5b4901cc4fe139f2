"""A real local SMTP server (aiosmtpd) that keeps every message it receives, and the Airflow SMTP connection
that points at it, for the alert tests."""

from __future__ import annotations

import contextlib
import email
import json
from collections.abc import Iterator
from email.message import Message
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller

SMTP_PORT = 19520
SENDER = "airflow@przyklad-handel.pl"


class _Inbox:
    """aiosmtpd handler: every message delivered, parsed."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # the name aiosmtpd calls
        self.messages.append(email.message_from_bytes(envelope.content, policy=default_policy))
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def smtp_server(port: int = SMTP_PORT) -> Iterator[list[Message]]:
    """A running SMTP server on 127.0.0.1:`port`; yields the list its messages land in, stops on exit."""
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox.messages
    finally:
        controller.stop()


def smtp_connection_env(port: int = SMTP_PORT) -> dict[str, str]:
    """`AIRFLOW_CONN_SMTP_DEFAULT`: plain SMTP (no TLS) to the local server, no retries, the sender set."""
    extra = {"disable_ssl": True, "disable_tls": True, "from_email": SENDER, "timeout": 10, "retry_limit": 0}
    return {
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(
            {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": extra}
        )
    }


def text_of(message: Message) -> str:
    """Every text part of a message, decoded (the body may travel base64 or quoted-printable)."""
    parts = message.walk() if message.is_multipart() else [message]
    return "\n".join(part.get_content() for part in parts if part.get_content_maintype() == "text")
