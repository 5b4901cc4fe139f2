"""Typed errors, so that callers decide by type (fail the run, quarantine the record, retry) and never by text."""

from __future__ import annotations


class SyncError(Exception):
    """Base of every error this package raises on purpose."""


class RecordDeferred(SyncError):
    """Another live run is writing this record right now; it is left for a later run, not quarantined."""


class ConfigError(SyncError):
    """The sync configuration or a connection is unusable; the message names the key or connection."""


class ApiError(SyncError):
    """An API answered with an error, or could not be reached.

    `message` is the API's own message (already free of secrets); `path` is the redacted request path.
    """

    def __init__(
        self,
        api: str,
        message: str,
        *,
        status: int | None = None,
        method: str = "",
        path: str = "",
        details: object = None,
    ) -> None:
        self.api = api
        self.status = status
        self.method = method
        self.path = path
        self.message = message
        self.details = details
        where = f" {method} {path}".rstrip()
        code = f" HTTP {status}" if status is not None else ""
        super().__init__(f"{api}{where}{code}: {message}")


class ApiAuthError(ApiError):
    """401/403: the token is wrong, expired or lacks rights. Retrying cannot help."""


class ApiNotFound(ApiError):
    """404: the record does not exist (or was deleted)."""


class ApiRejected(ApiError):
    """The API refused this request (4xx other than 401/403/404/429, or an error body in a 2xx answer).

    It concerns one record: the caller quarantines that record and carries on.
    """


class ApiUnavailable(ApiError):
    """429/5xx/connection failures went on past the retry budget. The run should fail and be retried later."""


class ApiRedirected(ApiUnavailable):
    """The API answered a redirect (3xx). Redirects are never followed: the request carries the API token, and
    a redirect target is not the API we were told to trust. It says the connection's host is wrong (e.g. http
    for https, or an account that moved), so the run fails; the message names the target, token redacted.
    """


class ApiMalformed(ApiUnavailable):
    """A 2xx answer whose body is not what the endpoint returns (not JSON, not a list of records, not a record).

    Reads retry it within the normal budget (a proxy's HTML page may pass); when it persists, the run fails
    rather than take a broken page for the end of a list. The message names the API and the path.
    """


class AmbiguousWriteError(ApiError):
    """A create (POST) failed in a way that leaves unknown whether the server applied it.

    Retrying blindly could create a duplicate, so the caller must look the record up before creating again.
    `may_still_land` says whether the request could still be applied *after* that look-up: True when the
    server never answered (connection dropped, attempt cut at its deadline, a gateway timeout), because the
    server may still be working on it; False when the server itself answered (a 500/502/503 or a garbled
    body), because then it is done with the request and a look-up that finds nothing is final.
    """

    @property
    def may_still_land(self) -> bool:
        return self.status is None or self.status == 504


class RecordError(SyncError):
    """One record cannot be processed; it goes to quarantine with `reason` and the run carries on."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")
