"""A labelled client data set: two client bases with known true duplicates, for tests and benchmarks.

`generate(seed, size)` builds about `size` clients per side. Some companies and persons exist in both
systems (the *truth* pairs), typed the way people type them in a CRM: the NIP in another spelling or
missing, the legal form spelled out or abbreviated (`Sp. z o.o.` / `spółka z ograniczoną
odpowiedzialnością`), diacritics dropped, upper case, a typo, the e-mail in other case or with spaces,
sometimes another address. Hard negatives are planted too: different companies with the same name stem,
companies sharing their accountant's e-mail (different NIPs), namesake persons, invalid NIPs, and
duplicate cards inside one system.

Same seed and size, same data. Faker (pl_PL) only fills small pools of names and streets once; records
are combined from them with a plain RNG, which is what makes 200,000 clients per side cheap.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faker import Faker

from sandbox import nip
from sandbox.clock import ANCHOR_MS, format_ms
from sandbox.records import CLIENT_DEFAULTS, CRM_CLIENT_DEFAULTS
from sandbox.seed import COMPANY_PREFIXES, COMPANY_TRADES, CRM_DEPARTMENT_OF, LEGAL_FORMS
from sandbox.seed import _crm_departments as crm_departments
from sandbox.seed import _crm_users as crm_users
from sandbox.seed import _departments as fakturownia_departments
from sandbox.seed import _slug as slug
from sandbox.server import STATE_FORMAT

SHARED_SHARE = 0.45  # of each side's clients also exist on the other side
PERSON_SHARE = 0.2
SIBLING_SHARE = 0.08  # one-side companies named like a shared one (same stem): must not merge
ACCOUNTANT_SHARE = 0.02  # one-side companies sharing an accountant's e-mail with another company
DUPLICATE_SHARE = 0.01  # companies with a second card in Fakturownia
DAY_MS = 86_400_000
_STRIP_DIACRITICS = str.maketrans("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ", "acelnoszzACELNOSZZ")


@dataclass
class _Entity:
    """One real-world client: what both systems' cards are typed from."""

    company: bool
    stem: str
    form: int
    nip: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    street: str
    post_code: str
    city: str
    phone: str
    department: int | None


@dataclass
class LabelledSet:
    fakturownia: list[dict[str, Any]]
    crm: list[dict[str, Any]]
    truth: set[tuple[int, int]] = field(default_factory=set)  # (Fakturownia id, CRM id) of the same client

    def state_document(self, seed: int = 0) -> dict[str, Any]:
        """A sandbox state file (`python -m sandbox --state-file`) holding exactly these clients."""
        return {
            "format": STATE_FORMAT,
            "seed": seed,
            "fakturownia": {
                "departments": fakturownia_departments(),
                "clients": self.fakturownia,
                "invoices": [],
                "next_ids": {"client": len(self.fakturownia) + 1, "invoice": 1, "position": 1},
            },
            "sugester": {
                "departments": crm_departments(),
                "users": crm_users(),
                "clients": self.crm,
                "deals": [],
                "next_ids": {"client": len(self.crm) + 1, "deal": 1},
            },
        }

    def write_state(self, path: Path, seed: int = 0) -> Path:
        path.write_text(json.dumps(self.state_document(seed), ensure_ascii=False), encoding="utf-8")
        return path


class _Pools:
    """Faker values drawn once per seed, combined later with the RNG."""

    def __init__(self, seed: int) -> None:
        fake = Faker("pl_PL")
        fake.seed_instance(seed)
        self.last_names = sorted({fake.last_name() for _ in range(3000)})
        self.male = [(fake.first_name_male(), fake.last_name_male()) for _ in range(1500)]
        self.female = [(fake.first_name_female(), fake.last_name_female()) for _ in range(1500)]
        self.streets = [fake.street_address() for _ in range(3000)]
        self.cities = sorted({fake.city() for _ in range(800)})
        self.phones = [fake.phone_number() for _ in range(3000)]
        self.free_domains = ("gmail.com", "wp.pl", "onet.pl", "o2.pl", "interia.pl")


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.pools = _Pools(seed)
        self.nips: set[str] = set()
        self.emails: set[str] = set()

    def unique_nip(self) -> str:
        while True:
            value = nip.generate(self.rng)
            if value not in self.nips:
                self.nips.add(value)
                return value

    def unique_email(self, local: str, domain: str) -> str:
        address, n = f"{local}@{domain}", 1
        while address in self.emails:
            n += 1
            address = f"{local}{n}@{domain}"
        self.emails.add(address)
        return address

    def place(self) -> tuple[str, str, str]:
        rng = self.rng
        return (
            rng.choice(self.pools.streets),
            f"{rng.randint(0, 99):02d}-{rng.randint(0, 999):03d}",
            rng.choice(self.pools.cities),
        )

    def stem(self) -> str:
        rng, names = self.rng, self.pools.last_names
        roll = rng.random()
        if roll < 0.35:
            return f"{rng.choice(COMPANY_PREFIXES)} {rng.choice(names)}"
        if roll < 0.6:
            return f"{rng.choice(names)}-{rng.choice(names)}"
        if roll < 0.85:
            return f"{rng.choice(names)} {rng.choice(COMPANY_TRADES)}"
        return f"{rng.choice(names)} i Wspólnicy"

    def company(self, stem: str | None = None) -> _Entity:
        rng = self.rng
        stem = stem or self.stem()
        street, post_code, city = self.place()
        return _Entity(
            company=True,
            stem=stem,
            form=rng.randrange(len(LEGAL_FORMS)),
            nip=self.unique_nip(),
            email=self.unique_email(rng.choice(("biuro", "kontakt", "faktury", "info")), f"{slug(stem)}.pl"),
            first_name=None,
            last_name=None,
            street=street,
            post_code=post_code,
            city=city,
            phone=rng.choice(self.pools.phones),
            department=rng.choice((11, 12, 13, None)),
        )

    def person(self) -> _Entity:
        rng = self.rng
        first, last = rng.choice(self.pools.male if rng.random() < 0.5 else self.pools.female)
        street, post_code, city = self.place()
        local = slug(f"{first}.{last}").replace("-", ".")
        return _Entity(
            company=False,
            stem=f"{first} {last}",
            form=-1,
            nip=self.unique_nip() if rng.random() < 0.1 else None,
            email=self.unique_email(local, rng.choice(self.pools.free_domains)) if rng.random() < 0.9 else None,
            first_name=first,
            last_name=last,
            street=street,
            post_code=post_code,
            city=city,
            phone=rng.choice(self.pools.phones),
            department=rng.choice((11, 12, 13, None)),
        )

    # How each system's card is typed ---------------------------------------------------------------

    def fakturownia_card(self, entity: _Entity) -> dict[str, Any]:
        rng = self.rng
        tax_no = None
        if entity.nip:
            tax_no = nip.spell(entity.nip, rng.choice(nip.SPELLINGS))
            if rng.random() < 0.02:
                tax_no = nip.spell(nip.corrupt(entity.nip, rng), "plain")  # a typo in the check digit
        name = f"{entity.stem} {LEGAL_FORMS[entity.form][0]}" if entity.company else entity.stem
        return self._card(entity, name, tax_no, entity.email, entity.department)

    def crm_card(self, entity: _Entity) -> dict[str, Any]:
        rng = self.rng
        tax_no = None
        if entity.nip and rng.random() < 0.88:
            tax_no = nip.spell(entity.nip, rng.choice(nip.SPELLINGS))
        email = entity.email
        roll = rng.random()
        if email and roll < 0.3:
            email = email.upper() if rng.random() < 0.5 else email.capitalize()
        elif email and roll < 0.35:
            email = f" {email} "
        elif roll < 0.45:
            email = None
        elif email and roll < 0.52:
            email = f"handlowy@{email.partition('@')[2]}"  # another address of the same company
        name = self.crm_name(entity)
        department = CRM_DEPARTMENT_OF.get(entity.department) if entity.department else None
        return self._card(entity, name, tax_no, email, department)

    def crm_name(self, entity: _Entity) -> str:
        rng = self.rng
        if entity.company:
            abbreviated, spelled_out = LEGAL_FORMS[entity.form]
            name = f"{entity.stem} {spelled_out if rng.random() < 0.5 else abbreviated}"
        else:
            name = entity.stem
        roll = rng.random()
        if roll < 0.1:
            name = name.upper()
        elif roll < 0.25:
            name = name.translate(_STRIP_DIACRITICS)
        elif roll < 0.35 and len(name) > 6:
            i = rng.randrange(1, len(name) - 2)
            name = name[:i] + name[i + 1] + name[i] + name[i + 2 :]  # two letters swapped
        return name

    @staticmethod
    def _card(
        entity: _Entity, name: str, tax_no: str | None, email: str | None, department: int | None
    ) -> dict[str, Any]:
        return {
            "name": name,
            "shortcut": entity.stem[:20],
            "tax_no": tax_no,
            "email": email,
            "phone": entity.phone,
            "street": entity.street,
            "post_code": entity.post_code,
            "city": entity.city,
            "country": "PL",
            "first_name": entity.first_name,
            "last_name": entity.last_name,
            "company": entity.company,
            "department_id": department,
        }


def generate(seed: int, size: int, *, full_shape: bool = True) -> LabelledSet:
    """About `size` clients per side with known true duplicates. `full_shape` adds every field the
    vendors' responses carry and timestamps (for the sandbox); the benchmark leaves it off to save memory."""
    gen = _Generator(seed)
    rng = gen.rng
    shared_count = int(size * SHARED_SHARE)
    own_count = size - shared_count
    shared = [gen.person() if rng.random() < PERSON_SHARE else gen.company() for _ in range(shared_count)]

    def one_side() -> list[_Entity]:
        entities = []
        for _ in range(own_count):
            roll = rng.random()
            if roll < SIBLING_SHARE and shared:
                source = rng.choice(shared)
                entities.append(gen.company(stem=source.stem) if source.company else gen.person())
            elif roll < SIBLING_SHARE + PERSON_SHARE:
                entities.append(gen.person())
            else:
                entities.append(gen.company())
        return entities

    only_f, only_c = one_side(), one_side()
    # Accountants' e-mails: one address on a Fakturownia-only and a CRM-only company with different NIPs.
    companies_f = [e for e in only_f if e.company]
    companies_c = [e for e in only_c if e.company]
    for _ in range(int(size * ACCOUNTANT_SHARE)):
        if companies_f and companies_c:
            address = gen.unique_email("biuro", f"rachunkowe-{slug(rng.choice(gen.pools.last_names))}.pl")
            rng.choice(companies_f).email = address
            rng.choice(companies_c).email = address

    fakturownia: list[tuple[dict[str, Any], int | None]] = []  # (card, shared entity index)
    crm: list[tuple[dict[str, Any], int | None]] = []
    for index, entity in enumerate(shared):
        fakturownia.append((gen.fakturownia_card(entity), index))
        crm.append((gen.crm_card(entity), index))
        if entity.company and rng.random() < DUPLICATE_SHARE:
            fakturownia.append((gen.fakturownia_card(entity), index))  # a second card, typed again
    fakturownia += [(gen.fakturownia_card(entity), None) for entity in only_f]
    crm += [(gen.crm_card(entity), None) for entity in only_c]
    rng.shuffle(fakturownia)
    rng.shuffle(crm)

    f_by_entity: dict[int, list[int]] = {}
    for position, (_card, entity) in enumerate(fakturownia):
        if entity is not None:
            f_by_entity.setdefault(entity, []).append(position + 1)
    truth = {
        (f_id, position + 1)
        for position, (_card, entity) in enumerate(crm)
        if entity is not None
        for f_id in f_by_entity[entity]
    }
    return LabelledSet(
        fakturownia=[_finish(card, i + 1, CLIENT_DEFAULTS, rng, full_shape) for i, (card, _) in enumerate(fakturownia)],
        crm=[_finish(card, i + 1, CRM_CLIENT_DEFAULTS, rng, full_shape) for i, (card, _) in enumerate(crm)],
        truth=truth,
    )


def _finish(
    card: dict[str, Any], record_id: int, defaults: dict[str, Any], rng: random.Random, full_shape: bool
) -> dict[str, Any]:
    if not full_shape:
        return {"id": record_id, **card}
    moment = format_ms(ANCHOR_MS - rng.randrange(1, 900) * DAY_MS - rng.randrange(DAY_MS))
    record = {**defaults, **card, "id": record_id, "created_at": moment, "updated_at": moment}
    if "external_ids" in defaults:
        record["external_ids"] = {}
    return record
