"""Linked client pairs merged field by field against their last synced snapshot, written both ways.

A field changed on one side flows to the other; a field changed on both sides is settled by
`conflict_policy` and recorded with both values (`client_merge` decides; this module writes). A pair whose
partner is gone, whose department cannot be translated, or whose write is refused goes to review; the
rest of the run carries on. A link made before the state DB knew the CRM client's external id gets it
stamped once, so the link survives the loss of the state DB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fakturownia_sync.client_bases import CRM_RECORD_FIELDS, MIRROR_FIELDS, SNAPSHOT_BATCH, ClientBases, trim
from fakturownia_sync.client_fields import FAKTUROWNIA_CLIENT_KEY, client_view, writable_value
from fakturownia_sync.client_merge import CRM, FAKTUROWNIA, plan_merge, snapshot_of
from fakturownia_sync.client_review_builder import ReviewBuilder
from fakturownia_sync.client_writes import FATAL, run_all, settle_in_order
from fakturownia_sync.config import SyncConfig
from fakturownia_sync.departments import DepartmentMap
from fakturownia_sync.errors import ApiAuthError, ApiNotFound, ApiRejected, ApiUnavailable, RecordError
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.records import parse_timestamp
from fakturownia_sync.redaction import redact
from fakturownia_sync.state import ClientLink, StateStore
from fakturownia_sync.sugester_client import SugesterClient, external_ids_of

log = logging.getLogger(__name__)


@dataclass
class Sent:
    """A pair's updates as the pool left them: each side's answer once sent, and the error that stopped them."""

    fakturownia: Any = None
    fakturownia_done: bool = False
    crm: Any = None
    crm_done: bool = False
    error: Exception | None = None


@dataclass
class PairPlan:
    """One linked pair's merge: what to write each way and the conflicts, planned before any request is sent."""

    link: ClientLink
    f_raw: dict[str, Any] | None
    c_raw: dict[str, Any] | None
    to_f: dict[str, Any] = field(default_factory=dict)
    to_c: dict[str, Any] = field(default_factory=dict)
    conflicts: list = field(default_factory=list)
    error: Exception | None = None
    sent: Sent | None = None

    @property
    def writes(self) -> bool:
        return self.error is None and bool(self.to_f or self.to_c)


class LinkedClientsMerge:
    def __init__(
        self,
        fakturownia: FakturowniaClient,
        crm: SugesterClient,
        store: StateStore,
        config: SyncConfig,
        summary: Any,
        bases: ClientBases,
        review: ReviewBuilder,
        *,
        owner: str,
    ) -> None:
        self.fakturownia = fakturownia
        self.crm = crm
        self.store = store
        self.config = config
        self.departments = DepartmentMap(config)
        self.summary = summary
        self.bases = bases
        self.review = review
        self.owner = owner
        self._secrets = (fakturownia.account.token, crm.account.token)

    def _agree(self, name: str, value_f: Any, value_c: Any) -> bool:
        return self.departments.agree(value_f, value_c) if name == "department_id" else value_f == value_c

    def merge_all(self) -> None:
        """Merge every linked pair: each pair's writes planned serially from the run's picture, the requests sent
        `crm_write_concurrency` at a time (a pair's Fakturownia update before its CRM update, as before), the
        answers applied in the links' order (`client_writes`). Pairs are independent: a link is one-to-one."""
        plans = [self._plan(link) for link in list(self.bases.links.values())]
        writing = [plan for plan in plans if plan.writes]
        answers = run_all([partial(self._send, plan) for plan in writing], self.config.crm_write_concurrency,
                          fatal=lambda sent: isinstance(sent.error, FATAL))  # fmt: skip
        for plan, sent in zip(writing, answers, strict=True):
            plan.sent = sent
        settle_in_order(plans, self._settle, ran=lambda plan: plan.sent is not None)

    def _plan(self, link: ClientLink) -> PairPlan:
        """What to write for one pair, from the run's picture; an error is kept for `_settle` to report."""
        f_raw, c_raw = self.bases.fakturownia.get(link.fakturownia_client_id), self.bases.crm.get(link.crm_client_id)
        plan = PairPlan(link, f_raw, c_raw)
        if f_raw is None or c_raw is None:
            return plan
        try:
            self._merge_plan(plan, f_raw, c_raw)
        except Exception as exc:  # reported in the links' order, as the serial merge did
            plan.error = exc
        return plan

    def _send(self, plan: PairPlan) -> Sent:
        """The pair's updates, Fakturownia first; run in the pool, so it changes nothing but the two systems."""
        sent = Sent()
        try:
            if plan.to_f:
                sent.fakturownia = self.fakturownia.update_client(plan.link.fakturownia_client_id, plan.to_f)
                sent.fakturownia_done = True
            if plan.to_c:
                sent.crm = self.crm.update_client(plan.link.crm_client_id, plan.to_c)
                sent.crm_done = True
        except Exception as exc:  # re-raised by `_settle`, in the links' order
            sent.error = exc
        return sent

    def _settle(self, plan: PairPlan) -> None:
        link, f_raw, c_raw = plan.link, plan.f_raw, plan.c_raw
        f_id = link.fakturownia_client_id
        if f_raw is None or c_raw is None:
            self._missing_partner(link, f_raw, c_raw)
            return
        if plan.writes and plan.sent is None:
            return  # never sent: the API was found unreachable first
        try:
            self._apply(plan, f_raw, c_raw)
        except RecordError as exc:
            self.review.add(FAKTUROWNIA, f_id, exc.reason, exc.message, c_raw)
        except ApiNotFound as exc:
            side = FAKTUROWNIA if exc.api.lower() == FAKTUROWNIA else CRM
            self._missing_partner(link, None if side == FAKTUROWNIA else f_raw, c_raw if side != CRM else None)
        except ApiRejected as exc:
            self.review.add(FAKTUROWNIA, f_id, f"{exc.api.lower()}_rejected", exc.message, c_raw)
        except (ApiAuthError, ApiUnavailable):
            raise
        except Exception as exc:
            log.exception("client pair %s/%s: unexpected error", f_id, link.crm_client_id)
            message = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            self.review.add(FAKTUROWNIA, f_id, "unexpected_error", message, c_raw)
        if len(self.bases.snapshots) >= SNAPSHOT_BATCH:
            self.bases.flush()

    def _missing_partner(self, link: ClientLink, f_raw: dict[str, Any] | None, c_raw: dict[str, Any] | None) -> None:
        if f_raw is not None:
            message = f"linked CRM client {link.crm_client_id} no longer exists; it is not recreated"
            self.review.add(FAKTUROWNIA, link.fakturownia_client_id, "linked_record_missing", message)
        elif c_raw is not None:
            message = f"linked Fakturownia client {link.fakturownia_client_id} no longer exists; it is not recreated"
            self.review.add(CRM, link.crm_client_id, "linked_record_missing", message)

    def _merge_plan(self, plan: PairPlan, f_raw: dict[str, Any], c_raw: dict[str, Any]) -> None:
        f_id = plan.link.fakturownia_client_id
        view_f, view_c = client_view(f_raw), client_view(c_raw)
        self.departments.check(view_f["department_id"], view_c["department_id"])
        merge = plan_merge(
            view_f,
            view_c,
            plan.link.snapshot,
            policy=self.config.conflict_policy,
            fakturownia_updated=parse_timestamp(f_raw.get("updated_at")),
            crm_updated=parse_timestamp(c_raw.get("updated_at")),
            agree=self._agree,
        )
        plan.to_f = {name: self._for_fakturownia(name, c_raw) for name in merge.to_fakturownia}
        plan.to_c = {name: self._for_crm(name, f_raw) for name in merge.to_crm}
        first_contact = plan.link.snapshot is None
        if first_contact and FAKTUROWNIA_CLIENT_KEY not in external_ids_of(c_raw):
            # Stamped once, when first linked, so the link survives the loss of the state DB.
            plan.to_c["external_ids"] = {FAKTUROWNIA_CLIENT_KEY: str(f_id)}
        plan.conflicts = merge.conflicts

    def _apply(self, plan: PairPlan, f_raw: dict[str, Any], c_raw: dict[str, Any]) -> None:
        """The pair's answers into the run's picture, its conflicts and its new snapshot; errors re-raised here."""
        if plan.error is not None:
            raise plan.error
        link, sent = plan.link, plan.sent or Sent()
        f_id, c_id = link.fakturownia_client_id, link.crm_client_id
        if sent.fakturownia_done:
            f_raw = self._updated_fakturownia(f_id, plan.to_f, f_raw, sent.fakturownia)
        if sent.crm_done:
            c_raw = self._updated_crm(c_id, plan.to_c, c_raw, sent.crm)
        if sent.error is not None:
            raise sent.error
        if plan.conflicts:
            self._record_conflicts(f_id, c_id, plan.conflicts)
        snapshot = snapshot_of(client_view(f_raw), client_view(c_raw))
        if snapshot != link.snapshot:
            self.bases.snapshots[f_id] = snapshot
            self.bases.links[f_id] = ClientLink(f_id, c_id, link.evidence, snapshot)

    def _for_crm(self, name: str, f_raw: dict[str, Any]) -> Any:
        if name == "department_id":
            return self.departments.to_crm(writable_value(name, f_raw.get(name)))
        return writable_value(name, f_raw.get(name))

    def _for_fakturownia(self, name: str, c_raw: dict[str, Any]) -> Any:
        if name == "department_id":
            return self.departments.to_fakturownia(writable_value(name, c_raw.get(name)))
        return writable_value(name, c_raw.get(name))

    def _updated_fakturownia(
        self, f_id: int, fields: dict[str, Any], old: dict[str, Any], answer: Any
    ) -> dict[str, Any]:
        record = trim(answer, MIRROR_FIELDS) if isinstance(answer, dict) and answer.get("id") else {**old, **fields}
        self.bases.fakturownia[f_id] = record
        self.bases.mirror_updates.append((record, parse_timestamp(record.get("updated_at"))))
        self.summary.updated_in_fakturownia += 1
        return record

    def _updated_crm(self, c_id: int, fields: dict[str, Any], old: dict[str, Any], answer: Any) -> dict[str, Any]:
        record = trim(answer, CRM_RECORD_FIELDS) if isinstance(answer, dict) and answer.get("id") else {**old, **fields}
        self.bases.crm[c_id] = record
        self.summary.updated_in_crm += 1
        return record

    def _record_conflicts(self, f_id: int, c_id: int, conflicts: list) -> None:
        rows = []
        for conflict in conflicts:
            log.info(
                "client %s/%s: %s changed on both sides; %s wins (%s)",
                f_id,
                c_id,
                conflict.field,
                conflict.winner,
                self.config.conflict_policy,
            )
            self.summary.conflicts += 1
            self.summary.conflicts_by_field[conflict.field] += 1
            rows.append(
                {
                    "fakturownia_client_id": f_id,
                    "crm_client_id": c_id,
                    "field": conflict.field,
                    "fakturownia_value": conflict.fakturownia_value,
                    "crm_value": conflict.crm_value,
                    "fakturownia_base": conflict.fakturownia_base,
                    "crm_base": conflict.crm_base,
                    "policy": self.config.conflict_policy,
                    "winner": conflict.winner,
                    "run_owner": self.owner,
                }
            )
        self.store.record_client_conflicts(rows)
