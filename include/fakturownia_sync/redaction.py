"""Keeping API tokens out of logs, exception texts, XComs and the state DB.

Tokens travel in query strings (GET/DELETE) and JSON bodies (writes), so every URL or message that could
carry one passes through `redact` before it is logged or raised.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

REDACTED = "***"
_QUERY_TOKEN = re.compile(r"(api_token=)[^&\s\"'#]+", re.IGNORECASE)
_BODY_TOKEN = re.compile(r"(\"api_token\"\s*:\s*\")[^\"]*(\")", re.IGNORECASE)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Replace every `api_token` value and every known secret (raw or URL-encoded) with `***`."""
    text = _QUERY_TOKEN.sub(r"\1" + REDACTED, text)
    text = _BODY_TOKEN.sub(r"\1" + REDACTED + r"\2", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED).replace(quote(secret, safe=""), REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts token-bearing URLs, e.g. the ones urllib3 logs at DEBUG level."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_redacting_filter() -> None:
    """Attach the filter to the loggers of the HTTP stack (idempotent)."""
    for name in ("urllib3.connectionpool", "urllib3", "requests"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
