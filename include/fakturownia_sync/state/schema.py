"""Table definitions of the state DB. Every change here needs a new migration in `migrations/versions/`.

Unique keys carry the "exactly one" promises: one deal per invoice (`invoice_deals.invoice_id`), one CRM
deal linked once (`invoice_deals.deal_id`), one-to-one client links, one quarantine entry per record,
one review entry per client, and one create per company or invoice however it is reached (`create_claim_keys`:
every evidence key of a create, each held by one claim at a time; the per-key client claim tables are gone
since migration 0006, the pending deal rows since 0009).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

metadata = MetaData()
Json = JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (no time zones) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state DB; pass an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("stream", String(64), nullable=False, index=True),
    Column("owner", String(250), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("summary", Json),
    Column("error", Text),
)

sync_cursors = Table(
    "sync_cursors",
    metadata,
    Column("stream", String(64), primary_key=True),
    Column("value", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

invoice_deals = Table(
    "invoice_deals",
    metadata,
    Column("invoice_id", BigInteger, primary_key=True, autoincrement=False),
    Column("deal_id", BigInteger, nullable=False, unique=True),  # a link only: creates are claimed (0009)
    Column("payload_hash", String(64)),
    Column("invoice_updated_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("shape_fingerprint", String(32)),  # deal-shaping config the deal was last written under (0007)
    Column("deal_deleted_at", UtcDateTime),  # when the linked deal was found deleted in the CRM (0007)
)

# A correction invoice's difference, by the invoice it corrects (migration 0007): that invoice's deal shows
# the amount after its corrections, whichever of the two documents a run meets first.
invoice_corrections = Table(
    "invoice_corrections",
    metadata,
    Column("correction_id", BigInteger, primary_key=True, autoincrement=False),
    Column("corrected_invoice_id", BigInteger, nullable=False, index=True),
    Column("number", String(250), nullable=False),
    Column("price_net", String(40), nullable=False),
    Column("price_gross", String(40), nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
)

client_links = Table(
    "client_links",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fakturownia_client_id", BigInteger, nullable=False, unique=True),
    Column("crm_client_id", BigInteger, nullable=False, unique=True),
    Column("evidence", String(32), nullable=False),
    Column("snapshot", Json),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("stream", String(64), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("payload", Json),
    Column("config_fingerprint", String(32)),
    Column("attempts", Integer, nullable=False, default=1),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime),
    # A person asked (in the UI) for this record to be tried in the next run, whatever its retry timer says.
    Column("retry_requested_at", UtcDateTime),  # migration 0008
    Column("retry_requested_by", String(250)),  # migration 0008
    UniqueConstraint("stream", "record_id", name="uq_quarantine_stream_record"),
)

backfill_windows = Table(
    "backfill_windows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity", String(32), nullable=False),  # invoices | clients
    Column("scope", String(250), nullable=False),  # what else defines the window's work, e.g. the invoice kinds
    Column("date_from", Date, nullable=False),
    Column("date_to", Date, nullable=False),
    Column("summary", Json),
    Column("finished_at", UtcDateTime, nullable=False),
    UniqueConstraint("entity", "scope", "date_from", "date_to", name="uq_backfill_window"),
)

# Two-way client sync (migration 0003) ------------------------------------------------------------------

fakturownia_client_mirror = Table(
    "fakturownia_client_mirror",
    metadata,
    # The last version of every Fakturownia client the sync has read: the incremental sweep only brings
    # what changed, and matching needs the whole base (a new client may duplicate an unchanged one).
    Column("client_id", BigInteger, primary_key=True, autoincrement=False),
    Column("updated_at", UtcDateTime),
    Column("record", Json, nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),
)

client_review = Table(
    "client_review",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject", String(64), nullable=False, unique=True),  # "fakturownia:<id>" | "crm:<id>"
    Column("reason", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("fakturownia_client_id", BigInteger),
    Column("crm_client_id", BigInteger),
    Column("fakturownia_record", Json),
    Column("crm_record", Json),
    Column("suggestions", Json),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime),
)

client_conflicts = Table(
    "client_conflicts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fakturownia_client_id", BigInteger, nullable=False, index=True),
    Column("crm_client_id", BigInteger, nullable=False),
    Column("field", String(64), nullable=False),
    Column("fakturownia_value", Json),
    Column("crm_value", Json),
    Column("fakturownia_base", Json),
    Column("crm_base", Json),
    Column("policy", String(32), nullable=False),
    Column("winner", String(16), nullable=False),
    Column("run_owner", String(250), nullable=False),
    Column("detected_at", UtcDateTime, nullable=False),
)

# Creates claimed on every evidence key at once (migration 0004) -----------------------------------------

create_claims = Table(
    "create_claims",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("target", String(32), nullable=False),  # what is created: crm_client | fakturownia_client | crm_deal
    Column("claimed_by", String(250), nullable=False),
    Column("claimed_at", UtcDateTime, nullable=False),
    Column("token", String(32), nullable=False),  # new on every claim and take-over: tells holders apart
    Column("created_id", BigInteger),  # null while the create is in flight or unconfirmed
)

create_claim_keys = Table(
    "create_claim_keys",
    metadata,
    # One row per evidence key of a claimed create ("fakturownia:<id>", "nip:<NIP>", "email:<address>",
    # "crm:<id>", "invoice:<id>"); the primary key lets one claim at a time hold a key of a target.
    Column("target", String(32), primary_key=True),
    Column("claim_key", String(320), primary_key=True),
    Column("claim_id", Integer, ForeignKey("create_claims.id"), nullable=False, index=True),
)

# What people decide in the UI and what the health check found (migration 0008) ---------------------------

review_decisions = Table(
    "review_decisions",
    metadata,
    # Every decision is kept (the audit list); the client sync applies the unapplied ones in order.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject", String(64), nullable=False, index=True),  # the client_review subject it answers
    Column("decision", String(16), nullable=False),  # link | different | ignore
    Column("fakturownia_client_id", BigInteger),
    Column("crm_client_id", BigInteger),
    Column("decided_by", String(250), nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
    Column("applied_at", UtcDateTime),
    Column("outcome", Text),  # what the client sync did with it, or why it could not
)

integration_checks = Table(
    "integration_checks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("checked_at", UtcDateTime, nullable=False, index=True),
    Column("ok", Boolean, nullable=False),
    Column("report", Json, nullable=False),
)
