"""Deterministic, realistically messy seed data for both vendors.

Everything here derives from one ``random.Random(seed)`` and one seeded
``Faker("pl_PL")`` and is anchored to :data:`sandbox.clock.ANCHOR`, never the
wall clock, so a seed always produces byte-identical data. Faker is only used
for the (few) clients; invoices are derived from them with the plain RNG and
fixed catalogues, which is what makes 200,000 invoices cheap.

The awkward parts the sync has to survive are planted on purpose: NIPs in many
spellings and a few with bad checksums, e-mails with odd case and whitespace,
duplicates, every invoice kind, cancelled invoices, corrections, cost
invoices, invoices without a buyer and invoices with malformed dates.
"""

from __future__ import annotations

import base64
import bisect
import gc
import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from faker import Faker

from sandbox import nip
from sandbox.clock import ANCHOR, ANCHOR_MS, date_of_ms, format_ms
from sandbox.money import cents_to_str
from sandbox.records import BUYER_FIELDS, CLIENT_DEFAULTS, CRM_CLIENT_DEFAULTS, DEPARTMENT_DEFAULTS, KINDS

PRIVATE_KEYS = ("_stem", "_form", "_nip", "_style", "_created_ms")

DAY_MS = 86_400_000
SPAN_DAYS = (ANCHOR.date() - ANCHOR.date().replace(year=ANCHOR.year - 3)).days
START_MS = ANCHOR_MS - SPAN_DAYS * DAY_MS
START_DAY = ANCHOR.date() - timedelta(days=SPAN_DAYS)
START_MIDNIGHT_MS = START_MS - 12 * 3_600_000

_TOKEN_SAFE = bytes.maketrans(b"+/", b"Qx")

BLANK_BUYER_INVOICES = 5
MALFORMED_DATE_INVOICES = 5
MALFORMED_DATES = ("2025-13-45", "15.03.2025", "2025-02-30", "2024/06/31", "31-12-2024")
MIN_PER_KIND = 3

KIND_WEIGHTS: dict[str, float] = dict.fromkeys(KINDS, 0.4) | {
    "vat": 70.0,
    "proforma": 5.0,
    "receipt": 4.0,
    "correction": 3.0,
    "advance": 2.0,
    "final": 1.5,
    "bill": 2.0,
    "vat_margin": 1.5,
    "estimate": 1.0,
    "wdt": 1.0,
    "export_products": 0.8,
}

NUMBER_PREFIX: dict[str, str] = {
    "vat": "FV",
    "proforma": "PRO",
    "bill": "R",
    "receipt": "PAR",
    "advance": "FZAL",
    "final": "FKON",
    "correction": "FK",
    "invoice_other": "FI",
    "vat_margin": "FVM",
    "kp": "KP",
    "kw": "KW",
    "estimate": "ZAM",
    "vat_mp": "FVMP",
    "vat_rr": "FVRR",
    "correction_note": "NK",
    "accounting_note": "NKS",
    "client_order": "ZK",
    "dw": "DW",
    "wnt": "WNT",
    "wdt": "WDT",
    "import_service": "IU",
    "import_service_eu": "IUE",
    "import_products": "IT",
    "export_products": "EXP",
}

ZERO_RATED_KINDS = frozenset(
    {"wdt", "export_products", "wnt", "import_service", "import_service_eu", "import_products"}
)
NON_VAT_KINDS = frozenset({"bill", "kp", "kw", "dw", "accounting_note", "correction_note"})
UNPAID_KINDS = frozenset({"proforma", "estimate", "client_order"})

# (name, unit, min net grosze, max net grosze, VAT rate)
PRODUCTS: tuple[tuple[str, str, int, int, int], ...] = (
    ("Usługi programistyczne", "godz.", 12_000, 25_000, 23),
    ("Konsultacje wdrożeniowe", "godz.", 15_000, 40_000, 23),
    ("Abonament serwisowy – pakiet Standard", "mies.", 29_900, 149_900, 23),
    ("Licencja oprogramowania (12 mies.)", "szt.", 49_900, 999_900, 23),
    ("Papier ksero A4 80 g/m²", "ryza", 1_800, 2_600, 23),
    ("Toner do drukarki laserowej", "szt.", 15_900, 49_900, 23),
    ("Transport towarów – trasa krajowa", "usł.", 35_000, 450_000, 23),
    ("Szkolenie BHP okresowe", "os.", 12_000, 30_000, 23),
    ("Wynajem sali konferencyjnej", "dzień", 80_000, 250_000, 23),
    ("Przegląd techniczny wózka widłowego", "usł.", 40_000, 120_000, 23),
    ("Projekt graficzny – identyfikacja wizualna", "usł.", 150_000, 900_000, 23),
    ("Remont łazienki (budownictwo mieszkaniowe)", "usł.", 200_000, 3_000_000, 8),
    ("Catering – zestaw obiadowy", "szt.", 2_500, 6_000, 8),
    ("Usługa noclegowa", "doba", 18_000, 45_000, 8),
    ("Książka „Rachunkowość w praktyce”", "szt.", 4_500, 12_000, 5),
    ("Pieczywo żytnie", "kg", 800, 2_000, 5),
)
EXPORT_PRODUCTS: tuple[tuple[str, str, int, int, int], ...] = (
    ("Maszyna pakująca MP-200", "szt.", 2_500_000, 9_000_000, 0),
    ("Części zamienne – zestaw serwisowy", "kpl.", 150_000, 800_000, 0),
    ("Meble biurowe – dostawa wewnątrzwspólnotowa", "kpl.", 300_000, 2_000_000, 0),
)

COMPANY_PREFIXES = (
    "Przedsiębiorstwo Handlowo-Usługowe",
    "Zakład Usług Budowlanych",
    "Biuro Rachunkowe",
    "Hurtownia",
    "Pracownia Projektowa",
    "Firma Transportowa",
    "PPUH",
    "FPUH",
    "Kancelaria",
    "Piekarnia",
    "Drukarnia",
    "Studio",
)
COMPANY_WORDS = (
    "Budmax",
    "Eko-Trans",
    "Żuraw-Bud",
    "Łączpol",
    "Gęślarz",
    "Śnieżka",
    "Polmet",
    "Kremówka",
    "Wiśniowy Sad",
    "Mazowsze",
    "Bałtyk",
    "Źródło",
    "Ćma Software",
    "Dębowa Góra",
    "Agro-Świt",
    "Informatyka Łódzka",
)
COMPANY_TRADES = ("Transport", "Serwis", "Logistyka", "Budownictwo", "Consulting", "Meble", "IT")

# (abbreviated, spelled out); both spellings occur, and the CRM often uses the other one.
LEGAL_FORMS: tuple[tuple[str, str], ...] = (
    ("Sp. z o.o.", "spółka z ograniczoną odpowiedzialnością"),
    ("sp. z o.o.", "Spółka z ograniczoną odpowiedzialnością"),
    ("S.A.", "Spółka Akcyjna"),
    ("sp.j.", "spółka jawna"),
    ("Sp.j.", "Spółka Jawna"),
    ("s.c.", "spółka cywilna"),
    ("Sp.k.", "spółka komandytowa"),
)
LEGAL_FORM_WEIGHTS = (30, 8, 8, 8, 4, 10, 4)

DEPARTMENTS: tuple[dict[str, Any], ...] = (
    {
        "id": 11,
        "name": "Centrala Warszawa",
        "shortcut": "WAW",
        "main": True,
        "street": "ul. Marszałkowska 126/134",
        "post_code": "00-008",
        "city": "Warszawa",
        "email": "faktury@przyklad-handel.pl",
        "phone": "+48 22 555 01 00",
        "person": "Agnieszka Wróblewska",
        "bank": "mBank S.A.",
        "bank_account": "12 1140 2004 0000 3102 7654 3210",
    },
    {
        "id": 12,
        "name": "Oddział Kraków",
        "shortcut": "KRK",
        "main": False,
        "street": "ul. Floriańska 55",
        "post_code": "31-019",
        "city": "Kraków",
        "email": "krakow@przyklad-handel.pl",
        "phone": "+48 12 555 02 00",
        "person": "Łukasz Żmuda",
        "bank": "PKO BP S.A.",
        "bank_account": "61 1020 2892 0000 5402 0012 3456",
    },
    {
        "id": 13,
        "name": "Oddział Gdańsk",
        "shortcut": "GDA",
        "main": False,
        "street": "ul. Długa 47/48",
        "post_code": "80-831",
        "city": "Gdańsk",
        "email": "gdansk@przyklad-handel.pl",
        "phone": "+48 58 555 03 00",
        "person": "Małgorzata Szczęsna",
        "bank": "Bank Pekao S.A.",
        "bank_account": "87 1240 1242 1111 0010 4567 8901",
    },
)
COMPANY_NAME = "Przykład Handel Sp. z o.o."
COMPANY_NIP = "5272998364"

CRM_DEPARTMENT_OF = {11: 1, 12: 2, 13: 3}
CRM_USERS = (
    ("anna.kowalczyk", "Anna Kowalczyk"),
    ("piotr.wisniewski", "Piotr Wiśniewski"),
    ("katarzyna.zielinska", "Katarzyna Zielińska"),
    ("michal.lewandowski", "Michał Lewandowski"),
)

_POLISH_ASCII = str.maketrans("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ", "acelnoszzACELNOSZZ")


@dataclass
class Seed:
    """The seeded state of both vendors, in the store's persistence format."""

    fakturownia: dict[str, Any]
    sugester: dict[str, Any]


def generate(seed: int, clients: int, invoices: int, crm_clients: int) -> Seed:
    """Build both vendors' data for a seed; same arguments, same bytes.

    The cyclic garbage collector is paused meanwhile: hundreds of thousands of
    new dicts would otherwise trigger repeated full collections that rescan
    everything built so far, which costs more than building it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(seed, clients, invoices, crm_clients)
    finally:
        if was_enabled:
            gc.enable()


def _generate(seed: int, clients: int, invoices: int, crm_clients: int) -> Seed:
    rng = random.Random(seed)
    fake = Faker("pl_PL")
    fake.seed_instance(seed)
    departments = _departments()
    fk_clients = _clients(rng, fake, clients)
    fk_invoices, next_position_id = _invoices(rng, invoices, fk_clients, departments)
    crm_clients_list = _crm_clients(rng, fake, crm_clients, fk_clients)
    for client in fk_clients:
        for key in PRIVATE_KEYS:
            del client[key]
    return Seed(
        fakturownia={
            "departments": departments,
            "clients": fk_clients,
            "invoices": fk_invoices,
            "next_ids": {
                "client": len(fk_clients) + 1,
                "invoice": len(fk_invoices) + 1,
                "position": next_position_id,
            },
        },
        sugester={
            "departments": _crm_departments(),
            "users": _crm_users(),
            "statuses": crm_deal_statuses(),
            "clients": crm_clients_list,
            "deals": [],
            "next_ids": {"client": len(crm_clients_list) + 1, "deal": 1},
        },
    )


def _token(rng: random.Random) -> str:
    """A 20-character alphanumeric token like ``NP4WXnGNQDu3y2Y4DxUi``."""
    return base64.b64encode(rng.randbytes(15)).translate(_TOKEN_SAFE).decode()


def _slug(text: str) -> str:
    ascii_text = text.translate(_POLISH_ASCII).lower()
    cleaned = "".join(c if c.isalnum() else "-" for c in ascii_text)
    return "-".join(part for part in cleaned.split("-") if part)[:30] or "firma"


def _distinct_ms(candidates: list[int]) -> list[int]:
    """Nudge colliding instants apart by a millisecond so every value is unique."""
    used: set[int] = set()
    result = []
    for value in candidates:
        while value in used:
            value += 1
        used.add(value)
        result.append(value)
    return result


def _departments() -> list[dict[str, Any]]:
    created = format_ms(START_MS - 400 * DAY_MS)
    result = []
    for index, dept in enumerate(DEPARTMENTS):
        result.append(
            {
                **DEPARTMENT_DEFAULTS,
                **dept,
                "kind": "Sp. z o.o.",
                "tax_no": nip.spell(COMPANY_NIP, "dashed"),
                "www": "https://przyklad-handel.pl",
                "created_at": created,
                "updated_at": format_ms(START_MS - (300 - index) * DAY_MS),
            }
        )
    return result


def _company_stem(rng: random.Random, fake: Faker) -> str:
    """A Polish company name without its legal form."""
    pattern = rng.random()
    if pattern < 0.3:
        stem = f"{rng.choice(COMPANY_PREFIXES)} {fake.last_name()}"
    elif pattern < 0.5:
        stem = f"{fake.last_name()}-{fake.last_name()}"
    elif pattern < 0.7:
        stem = rng.choice(COMPANY_WORDS)
    elif pattern < 0.85:
        stem = f"{fake.last_name()} {rng.choice(COMPANY_TRADES)}"
    else:
        stem = f"{fake.last_name()} i Wspólnicy"
    if rng.random() < 0.06:
        stem = f"„{stem}”" if rng.random() < 0.5 else f'"{stem}"'
    return stem


def _legal_form(rng: random.Random) -> tuple[int, bool]:
    """Index into LEGAL_FORMS and whether it is spelled out."""
    index = rng.choices(range(len(LEGAL_FORMS)), LEGAL_FORM_WEIGHTS)[0]
    return index, rng.random() < 0.2


def _odd_email(rng: random.Random, email: str) -> str:
    """Upper-case, capitalised or padded variants that real address books contain."""
    roll = rng.random()
    if roll < 0.12:
        email = email.upper()
    elif roll < 0.25:
        local, _, domain = email.partition("@")
        email = f"{local.capitalize()}@{domain.capitalize()}"
    if rng.random() < 0.05:
        email = rng.choice((f" {email}", f"{email} ", f"  {email}\t"))
    return email


def _clients(rng: random.Random, fake: Faker, count: int) -> list[dict[str, Any]]:
    # Early-skewed creation instants: most clients exist before most invoices.
    created = sorted(START_MS + int((SPAN_DAYS - 1) * DAY_MS * rng.random() ** 2) for _ in range(count))
    created = _distinct_ms(created)
    updated = []
    for moment in created:
        roll = rng.random()
        if roll < 0.45:
            updated.append(moment)
        else:
            updated.append(moment + int((ANCHOR_MS - DAY_MS - moment) * rng.random() ** (3 if roll < 0.9 else 1)))
    updated = _distinct_ms(updated)

    result: list[dict[str, Any]] = []
    for index in range(count):
        client_id = index + 1
        if rng.random() < 0.2:
            record = _person(rng, fake)
        elif result and rng.random() < 0.015:
            record = _duplicate_company(rng, result) or _company(rng, fake)
        else:
            record = _company(rng, fake)
        street = fake.street_address()
        record = {**CLIENT_DEFAULTS, **record}
        record.update(
            id=client_id,
            _created_ms=created[index],
            street=street,
            post_code=fake.postcode(),
            city=fake.city(),
            country="PL",
            phone=fake.phone_number() if rng.random() < 0.85 else None,
            mobile_phone=fake.phone_number() if rng.random() < 0.3 else None,
            department_id=rng.choices((11, 12, 13, None), (50, 25, 15, 10))[0],
            external_id=None,
            token=_token(rng),
            created_at=format_ms(created[index]),
            updated_at=format_ms(max(created[index], updated[index])),
        )
        result.append(record)
    return result


def _company(rng: random.Random, fake: Faker) -> dict[str, Any]:
    stem = _company_stem(rng, fake)
    form, spelled_out = _legal_form(rng)
    name = f"{stem} {LEGAL_FORMS[form][1 if spelled_out else 0]}"
    tax_no = nip.generate(rng)
    if rng.random() < 0.03:
        tax_no = nip.corrupt(tax_no, rng)
    style = rng.choices(nip.SPELLINGS, (40, 20, 10, 12, 8, 10))[0]
    email = f"{rng.choice(('biuro', 'kontakt', 'faktury', 'ksiegowosc', 'info'))}@{_slug(stem)}.pl"
    return {
        "name": name,
        "shortcut": stem.strip('"„”')[:20],
        "tax_no": nip.spell(tax_no, style),
        "tax_no_kind": "",
        "company": True,
        "first_name": None,
        "last_name": None,
        "email": _odd_email(rng, email) if rng.random() < 0.93 else rng.choice(("", None)),
        "www": f"https://{_slug(stem)}.pl" if rng.random() < 0.4 else None,
        "register_number": f"{rng.randint(10**8, 10**9 - 1)}" if rng.random() < 0.5 else None,
        "note": None,
        "_stem": stem,
        "_form": form,
        "_nip": tax_no,
        "_style": style,
    }


def _person(rng: random.Random, fake: Faker) -> dict[str, Any]:
    if rng.random() < 0.5:
        first, last = fake.first_name_male(), fake.last_name_male()
    else:
        first, last = fake.first_name_female(), fake.last_name_female()
    tax_no: str | None = rng.choice(("", None))
    raw_nip = None
    if rng.random() < 0.12:
        raw_nip = nip.generate(rng)
        tax_no = nip.spell(raw_nip, rng.choice(nip.SPELLINGS))
    return {
        "name": f"{first} {last}",
        "shortcut": f"{first[0]}. {last}",
        "tax_no": tax_no,
        "tax_no_kind": "",
        "company": False,
        "first_name": first,
        "last_name": last,
        "email": _odd_email(rng, fake.free_email()) if rng.random() < 0.85 else None,
        "www": None,
        "register_number": None,
        "note": rng.choice((None, None, "Klient indywidualny")),
        "_stem": None,
        "_form": None,
        "_nip": raw_nip,
        "_style": None,
    }


def _duplicate_company(rng: random.Random, existing: list[dict[str, Any]]) -> dict[str, Any]:
    """A second card for an existing company, as happens when someone re-types it."""
    companies = [c for c in existing if c["company"] and c["_nip"]]
    if not companies:
        return {}
    original = rng.choice(companies)
    styles = [s for s in nip.SPELLINGS if s != original["_style"]]
    style = rng.choice(styles)
    form = original["_form"]
    return {
        **{k: original[k] for k in ("shortcut", "tax_no_kind", "company", "first_name", "last_name")},
        "name": f"{original['_stem']} {LEGAL_FORMS[form][1]}",
        "tax_no": nip.spell(original["_nip"], style),
        "email": (original["email"] or "").strip().lower() or None,
        "www": original["www"],
        "register_number": original["register_number"],
        "note": "Duplikat? Sprawdzić z księgowością",
        "_stem": original["_stem"],
        "_form": form,
        "_nip": original["_nip"],
        "_style": style,
    }


def _invoice_kinds(rng: random.Random, count: int) -> list[str]:
    kinds = rng.choices(list(KIND_WEIGHTS), list(KIND_WEIGHTS.values()), k=count)
    # Plant a few of every kind at evenly spread positions so none is missing.
    forced = len(KINDS) * MIN_PER_KIND
    for slot in range(min(forced, count)):
        position = (slot * count) // forced + (count // (2 * forced) if count >= 2 * forced else 0)
        kinds[min(position, count - 1)] = KINDS[slot % len(KINDS)]
    return kinds


def _awkward_positions(count: int) -> tuple[set[int], set[int]]:
    """Fixed, evenly spread slots for the buyer-less and the malformed-date invoices."""
    blank: set[int] = set()
    malformed: set[int] = set()
    if count == 0:
        return blank, malformed
    taken: set[int] = set()
    for index in range(BLANK_BUYER_INVOICES + MALFORMED_DATE_INVOICES):
        position = ((2 * index + 1) * count) // (2 * (BLANK_BUYER_INVOICES + MALFORMED_DATE_INVOICES))
        position = (position + 7) % count
        while position in taken and len(taken) < count:
            position = (position + 1) % count
        if position in taken:
            break
        taken.add(position)
        (blank if index % 2 == 0 else malformed).add(position)
    return blank, malformed


def _invoices(
    rng: random.Random,
    count: int,
    clients: list[dict[str, Any]],
    departments: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], int]:
    kinds = _invoice_kinds(rng, count)
    department_ids = rng.choices((11, 12, 13, None), (55, 25, 12, 8), k=count)
    blank_slots, malformed_slots = _awkward_positions(count)
    malformed_dates = iter(MALFORMED_DATES)
    client_created = [c["_created_ms"] for c in clients]
    sellers = {d["id"]: seller_block(d) for d in departments}
    buyers_of_department = {d["id"]: _buyer_of_department(d) for d in departments}
    buyer_cache: dict[int, dict[str, Any]] = {}
    day_strings: dict[int, str] = {}
    counters: dict[tuple[str, int, int], int] = {}

    def day_str(day_index: int) -> str:
        text = day_strings.get(day_index)
        if text is None:
            text = (START_DAY + timedelta(days=day_index)).isoformat()
            day_strings[day_index] = text
        return text

    created_all: list[int] = []
    updated_all: list[int] = []
    day_indices: list[int] = []
    for index in range(count):
        day_index = (index * SPAN_DAYS) // max(count, 1)
        created = START_MIDNIGHT_MS + day_index * DAY_MS + rng.randint(7 * 3_600_000, 19 * 3_600_000)
        created = min(created, ANCHOR_MS - 3_600_000)
        roll = rng.random()
        if roll < 0.5:
            delta = rng.randint(0, 300_000)
        elif roll < 0.9:
            delta = rng.randint(300_000, 30 * DAY_MS)
        else:
            delta = rng.randint(0, 400 * DAY_MS)
        created_all.append(created)
        updated_all.append(min(created + delta, ANCHOR_MS - 1000 - (count - index)))
        day_indices.append(day_index)
    updated_all = _distinct_ms(updated_all)

    result: list[dict[str, Any]] = []
    sales_ids: list[int] = []
    advance_ids: list[int] = []
    position_id = 1
    for index in range(count):
        invoice_id = index + 1
        kind = kinds[index]
        blank_buyer = index in blank_slots
        malformed = index in malformed_slots
        if blank_buyer or malformed:
            kind = "vat"
        cost_roll = rng.random()
        day_index = day_indices[index]
        issue_day = START_DAY + timedelta(days=day_index)
        created_ms = created_all[index]
        updated_ms = max(updated_all[index], created_ms)

        corrected: dict[str, Any] | None = None
        if kind == "correction" and sales_ids:
            corrected = result[rng.choice(sales_ids[-500:]) - 1]
            client_index = (corrected["client_id"] or 1) - 1
        else:
            eligible = bisect.bisect_right(client_created, created_ms)
            client_index = rng.randrange(max(eligible, 1)) if clients else -1
        client = clients[client_index] if clients and client_index >= 0 else None
        # Corrections and the planted awkward invoices are always sales documents.
        income = blank_buyer or malformed or corrected is not None or cost_roll >= 0.05

        department_id = department_ids[index]
        currency = "PLN"
        if kind in ZERO_RATED_KINDS or rng.random() < 0.07:
            currency = "EUR" if rng.random() < 0.85 else "USD"

        positions, net, gross = _positions(rng, kind, corrected, position_id, invoice_id)
        position_id += len(positions)

        prefix = NUMBER_PREFIX[kind]
        key = (prefix, issue_day.year, issue_day.month)
        counters[key] = counters.get(key, 0) + 1
        if income:
            number = f"{prefix} {counters[key]}/{issue_day.month:02d}/{issue_day.year}"
        else:
            number = f"F/{rng.randint(1, 9999)}/{issue_day.year}"

        cancelled = rng.random() < 0.02 and not (blank_buyer or malformed)
        status, paid_cents, paid_date = _payment(rng, kind, cancelled, gross, issue_day)
        payment_days = rng.choice((7, 14, 14, 21, 30))
        issue_text = day_str(day_index)

        invoice: dict[str, Any] = {
            "id": invoice_id,
            "number": number,
            "kind": kind,
            "income": income,
            "cancelled": cancelled,
            "status": status,
            "issue_date": issue_text,
            "sell_date": issue_text,
            "transaction_date": issue_text,
            "delivery_date": issue_text,
            "issue_year": issue_day.year,
            "payment_to": day_str(day_index + payment_days),
            "payment_to_kind": payment_days,
            "paid_date": paid_date,
            "paid": cents_to_str(paid_cents),
            "price_net": cents_to_str(net),
            "price_gross": cents_to_str(gross),
            "price_tax": cents_to_str(gross - net),
            "currency": currency,
            "department_id": department_id,
            "token": _token(rng),
            "created_at": format_ms(created_ms),
            "updated_at": format_ms(updated_ms),
            "product_cache": ", ".join(p["name"] for p in positions),
            "positions": positions,
            "pattern_nr": counters[key],
            "pattern_nr_m": issue_day.month,
        }
        if currency != "PLN":
            invoice["exchange_currency"] = "PLN"
            invoice["exchange_currency_rate"] = f"{rng.uniform(4.1, 4.7):.4f}"
            invoice["lang"] = "pl/en"
        if cancelled:
            invoice["cancel_reason"] = "Wystawiona omyłkowo"
        if corrected is not None:
            invoice["invoice_id"] = corrected["id"]
            invoice["gov_corrected_invoice_number"] = corrected["number"]
            invoice["description"] = f"Korekta do faktury {corrected['number']}: rabat posprzedażowy"
        if kind == "final" and advance_ids:
            invoice["from_invoice_id"] = rng.choice(advance_ids[-200:])

        seller = sellers[department_id or 11]
        if income:
            invoice.update(seller)
            if blank_buyer:
                invoice.update(dict.fromkeys(BUYER_FIELDS, ""))
                invoice["client_id"] = None
            elif client is not None:
                block = buyer_cache.get(client["id"])
                if block is None:
                    block = buyer_cache[client["id"]] = buyer_block(client)
                invoice.update(block)
                invoice["client_id"] = client["id"]
                invoice["client_company"] = client["company"]
        else:
            # A cost invoice: the client card is the supplier, the department is the buyer.
            if client is not None:
                invoice.update(_supplier_of(client))
                invoice["client_id"] = client["id"]
            invoice.update(buyers_of_department[department_id or 11])
        if malformed:
            invoice["issue_date"] = next(malformed_dates)

        result.append(invoice)
        if income and not blank_buyer and kind in ("vat", "vat_margin", "final", "advance", "export_products", "wdt"):
            sales_ids.append(invoice_id)
        if income and kind == "advance":
            advance_ids.append(invoice_id)
    return result, position_id


def seller_block(department: dict[str, Any]) -> dict[str, Any]:
    """The seller_* fields an invoice issued by a department carries."""
    return {
        "seller_name": COMPANY_NAME if department["main"] else f"{COMPANY_NAME} {department['name']}",
        "seller_tax_no": department["tax_no"],
        "seller_street": department["street"],
        "seller_post_code": department["post_code"],
        "seller_city": department["city"],
        "seller_country": "PL",
        "seller_email": department["email"],
        "seller_phone": department["phone"],
        "seller_www": department["www"],
        "seller_person": department["person"],
        "seller_bank": department["bank"],
        "seller_bank_account": department["bank_account"],
    }


def _buyer_of_department(department: dict[str, Any]) -> dict[str, Any]:
    return {
        "buyer_name": COMPANY_NAME,
        "buyer_tax_no": department["tax_no"],
        "buyer_street": department["street"],
        "buyer_post_code": department["post_code"],
        "buyer_city": department["city"],
        "buyer_country": "PL",
        "buyer_email": department["email"],
        "buyer_company": True,
    }


def buyer_block(client: dict[str, Any]) -> dict[str, Any]:
    """The buyer_* fields copied from a client card when an invoice is issued."""
    block: dict[str, Any] = dict.fromkeys(BUYER_FIELDS, "")
    block.update(
        buyer_name=client["name"] or "",
        buyer_tax_no=client["tax_no"] or "",
        buyer_post_code=client["post_code"] or "",
        buyer_city=client["city"] or "",
        buyer_street=client["street"] or "",
        buyer_country=client["country"] or "",
        buyer_email=client["email"] or "",
        buyer_phone=client["phone"] or "",
        buyer_mobile_phone=client["mobile_phone"] or "",
        buyer_www=client["www"] or "",
        buyer_first_name=client["first_name"] or "",
        buyer_last_name=client["last_name"] or "",
        buyer_person="" if client["company"] else client["name"],
        buyer_company=client["company"],
        buyer_mass_payment_code=None,
    )
    return block


def _supplier_of(client: dict[str, Any]) -> dict[str, Any]:
    return {
        "seller_name": client["name"],
        "seller_tax_no": client["tax_no"] or "",
        "seller_street": client["street"] or "",
        "seller_post_code": client["post_code"] or "",
        "seller_city": client["city"] or "",
        "seller_country": client["country"] or "",
        "seller_email": client["email"] or "",
        "seller_phone": client["phone"] or "",
        "seller_bank": "",
        "seller_bank_account": "",
        "seller_person": "",
        "seller_www": "",
    }


def _positions(
    rng: random.Random,
    kind: str,
    corrected: dict[str, Any] | None,
    first_id: int,
    invoice_id: int,
) -> tuple[list[dict[str, Any]], int, int]:
    """Line items and their net/gross totals in grosze (negative for corrections)."""
    lines: list[tuple[str, str, int, int, int]] = []
    if corrected is not None:
        source = rng.choice(corrected["positions"])
        quantity = -max(1, int(float(source["quantity"])) // 2)
        unit = round(float(source["price_net"]) * 100)
        lines.append((f"Korekta: {source['name']}", source["quantity_unit"], unit, quantity, int(source["tax"])))
    else:
        catalogue = EXPORT_PRODUCTS if kind in ZERO_RATED_KINDS else PRODUCTS
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            name, unit_name, low, high, tax = rng.choice(catalogue)
            if kind in NON_VAT_KINDS:
                tax = 0
            quantity = rng.choice((1, 1, 1, 2, 3, 5, 10)) if unit_name != "godz." else rng.randint(1, 160)
            lines.append((name, unit_name, rng.randint(low, high) // 10 * 10, quantity, tax))
    positions = []
    total_net = total_gross = 0
    for offset, (name, unit_name, unit_net, quantity, tax) in enumerate(lines):
        line_net = unit_net * quantity
        line_gross = (line_net * (100 + tax) + (50 if line_net >= 0 else -50)) // 100
        total_net += line_net
        total_gross += line_gross
        positions.append(
            {
                "id": first_id + offset,
                "invoice_id": invoice_id,
                "name": name,
                "quantity": f"{quantity}.0",
                "quantity_unit": unit_name,
                "tax": str(tax),
                "price_net": cents_to_str(unit_net),
                "price_gross": cents_to_str((unit_net * (100 + tax) + 50) // 100),
                "total_price_net": cents_to_str(line_net),
                "total_price_gross": cents_to_str(line_gross),
            }
        )
    return positions, total_net, total_gross


def _payment(
    rng: random.Random,
    kind: str,
    cancelled: bool,
    gross: int,
    issue_day: date,
) -> tuple[str, int, str]:
    """Status, amount paid (grosze) and paid_date ("" when unpaid)."""
    age_days = (ANCHOR.date() - issue_day).days
    if kind in UNPAID_KINDS or cancelled:
        return rng.choice(("issued", "sent")), 0, ""
    if kind in ("receipt", "kp", "kw"):
        return "paid", gross, issue_day.isoformat()
    roll = rng.random()
    paid_share = 0.85 if age_days > 60 else 0.35
    if roll < paid_share:
        latest = min(age_days, 45)
        paid_day = issue_day + timedelta(days=rng.randint(0, max(latest, 0)))
        paid_day = min(paid_day, date_of_ms(ANCHOR_MS))
        return "paid", gross, paid_day.isoformat()
    if roll < paid_share + 0.05 and gross > 0:
        return "partial", gross * rng.randint(1, 9) // 10, ""
    return rng.choice(("issued", "sent", "sent")), 0, ""


def _crm_departments() -> list[dict[str, Any]]:
    return [{"id": CRM_DEPARTMENT_OF[d["id"]], "name": d["name"], "shortcut": d["shortcut"]} for d in DEPARTMENTS]


def _crm_users() -> list[dict[str, Any]]:
    return [
        {"id": index + 1, "login": login, "email": f"{login}@przyklad-handel.pl", "name": name}
        for index, (login, name) in enumerate(CRM_USERS)
    ]


# The CRM's deal pipeline (`GET /app/statuses.json?kind=deal`); "Wygrany" (won) is the status DESIGN.md's
# example marks for invoicing, "Zafakturowany" the one an invoiced deal may move to.
CRM_DEAL_STATUSES = (
    ("Nowy", "new"),
    ("W negocjacjach", "negotiation"),
    ("Wygrany", "won"),
    ("Przegrany", "lost"),
    ("Zafakturowany", "invoiced"),
)
INVOICING_STATUS = "Wygrany"
INVOICED_STATUS = "Zafakturowany"


def crm_deal_statuses() -> list[dict[str, Any]]:
    return [
        {"id": index + 1, "name": name, "code": code, "kind": "deal"}
        for index, (name, code) in enumerate(CRM_DEAL_STATUSES)
    ]


def invoicing_deals(sugester: dict[str, Any], count: int = 4) -> list[dict[str, Any]]:
    """Deals salespeople opened and marked won ("Dodaj fakturę"), as `POST /app/deals.json` fields.

    Each belongs to a seeded CRM client with a valid-looking card, is owned by a CRM user and sits in the
    invoicing status; prices and currencies vary. The same state gives the same deals (the demo posts only
    those whose name the CRM does not have yet, so a second demo adds none)."""
    status_id = next(s["id"] for s in sugester["statuses"] if s["name"] == INVOICING_STATUS)
    rng = random.Random(f"{len(sugester['clients'])}:invoicing-deals")
    clients = [c for c in sugester["clients"] if c.get("email") and c.get("name")][: max(count * 3, count)]
    offers = (
        ("Wdrożenie systemu CRM", "18450.00", "PLN"),
        ("Szkolenie zespołu sprzedaży", "3200.00", "PLN"),
        ("Licencja roczna – pakiet Biznes", "990.00", "EUR"),
        ("Audyt procesów magazynowych", "7600.50", "PLN"),
        ("Serwis pogwarancyjny", "1250.00", "PLN"),
        ("Integracja ze sklepem internetowym", "5400.00", "PLN"),
    )
    deals = []
    for index in range(min(count, len(clients))):
        name, price, currency = offers[index % len(offers)]
        client = clients[rng.randrange(len(clients))]
        deals.append(
            {
                "name": f"{name} – {client['name']}"[:200],
                "price": price,
                "currency": currency,
                "client_id": client["id"],
                "department_id": client.get("department_id"),
                "status_id": status_id,
                "responsible_id": sugester["users"][index % len(sugester["users"])]["id"],
            }
        )
    return deals


def _respell_name(rng: random.Random, client: dict[str, Any]) -> str:
    """The same company name as a CRM user would type it: other legal form, case, quotes."""
    stem = client["_stem"]
    if stem is None:
        return client["name"] if rng.random() < 0.5 else client["name"].upper()
    abbreviated, spelled_out = LEGAL_FORMS[client["_form"]]
    suffix = abbreviated if client["name"].endswith(spelled_out) else spelled_out
    stem = stem.strip('"„”')
    if rng.random() < 0.15:
        stem = stem.upper()
    return f"{stem} {suffix}"


def _crm_clients(rng: random.Random, fake: Faker, count: int, fk_clients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    linkable = [c for c in fk_clients if c.get("_stem") or c["email"]]
    shared = min(len(linkable), int(count * 0.6))
    chosen = rng.sample(linkable, shared) if shared else []
    duplicates = min(len(chosen), max(count // 30, 1 if count >= 10 else 0))
    created = sorted(START_MS + rng.randint(0, SPAN_DAYS * DAY_MS - DAY_MS) for _ in range(count))
    created = _distinct_ms(created)
    updated = _distinct_ms([c + int((ANCHOR_MS - DAY_MS - c) * rng.random() ** 2) for c in created])
    plan: list[tuple[str, dict[str, Any] | None]] = [("shared", c) for c in chosen]
    plan += [("duplicate", c) for c in chosen[:duplicates]]
    plan += [("own", None)] * max(count - len(plan), 0)
    plan = plan[:count]
    rng.shuffle(plan)

    result = []
    for index, (origin, source) in enumerate(plan):
        record: dict[str, Any]
        if source is not None:
            record = _crm_copy_of(rng, source, duplicate=origin == "duplicate")
        else:
            record = _crm_own_company(rng, fake)
        record = {**CRM_CLIENT_DEFAULTS, **record}
        record.update(
            id=index + 1,
            responsible_id=rng.choice((1, 2, 3, 4, None)),
            external_id=None,
            external_ids={},
            created_at=format_ms(created[index]),
            updated_at=format_ms(max(created[index], updated[index])),
        )
        result.append(record)
    return result


def _crm_copy_of(rng: random.Random, source: dict[str, Any], *, duplicate: bool) -> dict[str, Any]:
    raw_nip = source["_nip"]
    tax_no = None
    if raw_nip and rng.random() < 0.85:
        styles = [s for s in nip.SPELLINGS if s != source["_style"]]
        tax_no = nip.spell(raw_nip, rng.choice(styles))
    email = (source["email"] or "").strip()
    if email:
        email = email.lower() if email != email.lower() else email.upper() if rng.random() < 0.3 else email
    department = source["department_id"]
    return {
        "name": _respell_name(rng, source),
        "shortcut": source["shortcut"],
        "tax_no": tax_no,
        "email": email or None,
        "phone": source["phone"],
        "mobile_phone": source["mobile_phone"],
        "street": source["street"],
        "post_code": source["post_code"],
        "city": source["city"],
        "country": "PL",
        "first_name": source["first_name"],
        "last_name": source["last_name"],
        "company": source["company"],
        "note": "Dodany ręcznie z wizytówki" if duplicate else None,
        "department_id": CRM_DEPARTMENT_OF.get(department) if department else None,
    }


def _crm_own_company(rng: random.Random, fake: Faker) -> dict[str, Any]:
    stem = _company_stem(rng, fake)
    form, spelled_out = _legal_form(rng)
    return {
        "name": f"{stem} {LEGAL_FORMS[form][1 if spelled_out else 0]}",
        "shortcut": stem.strip('"„”')[:20],
        "tax_no": nip.spell(nip.generate(rng), rng.choice(nip.SPELLINGS)) if rng.random() < 0.7 else None,
        "email": f"{rng.choice(('biuro', 'kontakt', 'handlowy'))}@{_slug(stem)}.com.pl",
        "phone": fake.phone_number(),
        "mobile_phone": None,
        "street": fake.street_address(),
        "post_code": fake.postcode(),
        "city": fake.city(),
        "country": "PL",
        "first_name": None,
        "last_name": None,
        "company": True,
        "note": rng.choice((None, "Lead z targów", "Polecenie")),
        "department_id": rng.choice((1, 2, 3, None)),
    }
