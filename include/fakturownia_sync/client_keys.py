"""Matching keys of a client, computed one record at a time or for a whole column at once.

Both matchers use these functions and nothing else to turn raw fields into keys: `CrmClientIndex` (one
invoice's buyer at a time, in the invoices → deals sync) and the bulk matcher of the two-way client sync.
That is what keeps the two from disagreeing about whether two records are the same company, so a deal
never lands on a second copy of a client.

The reference for a tax id is `tax_numbers.check_tax_number` (python-stdnum, junk refused, foreign ids keyed
with their country). The column version computes the NIP checksum with numpy for values in the plain shapes
people type (`5261040828`, `526-104-08-28`, `PL 526 104 08 28`), refuses all-one-digit junk there too, and
hands every other value (foreign ids, placeholders) to `check_tax_number`, once per distinct value; a test
holds the two to the same answer.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd
from rapidfuzz import fuzz
from rapidfuzz.process import cpdist
from stdnum.exceptions import ValidationError

from fakturownia_sync.tax_numbers import check_tax_number, normalise_email

_NIP_WEIGHTS = np.array([6, 5, 7, 2, 3, 4, 5, 6, 7, -1], dtype=np.int64)
# Values stdnum's `nip.compact` reduces by dropping spaces, dashes and a leading "PL" (any case).
_PLAIN_NIP = r"(?:[Pp][Ll])?[0-9 \-]+"

LEGAL_FORMS = (
    # spelled-out first, so "spółka z o.o." is not half-eaten by a shorter pattern
    r"sp[oó][lł]ka z ograniczon[aą] odpowiedzialno[sś]ci[aą]",
    r"sp[oó][lł]ka akcyjna",
    r"sp[oó][lł]ka jawna",
    r"sp[oó][lł]ka cywilna",
    r"sp[oó][lł]ka komandytowa",
    r"sp[oó][lł]ka komandytowo[- ]akcyjna",
    r"sp\.? ?z ?o\.? ?o\.?",
    r"sp\.? ?j\.?",
    r"sp\.? ?k\.?",
    r"s\.? ?a\.?",
    r"s\.? ?c\.?",
)
_LEGAL_FORM = re.compile(r"\b(?:" + "|".join(LEGAL_FORMS) + r")(?=\W|$)", re.IGNORECASE)
_NON_WORD = re.compile(r"[^0-9a-z]+")
_POLISH = str.maketrans("łŁ", "lL")  # ł does not decompose under NFKD


def tax_key(raw: str | None) -> str | None:
    """The comparable tax id (a NIP's ten digits, a foreign id with its country prefix); None when it is no
    evidence: absent, junk (`0000000000`, "brak") or failing its country's rule."""
    try:
        return check_tax_number(raw).key
    except ValidationError:
        return None


def email_key(raw: str | None) -> str | None:
    """The comparable e-mail: whitespace and case folded; None when it is not an address."""
    return normalise_email(raw)


def name_key(raw: str | None) -> str:
    """A company or person name reduced for similarity scoring (suggestions only, never a merge).

    Legal forms in either spelling (`Sp. z o.o.` / `spółka z ograniczoną odpowiedzialnością`), quotes,
    punctuation, diacritics and case are dropped, because the same company is typed all those ways.
    """
    text = (raw or "").translate(_POLISH)
    text = _LEGAL_FORM.sub(" ", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


def distinctive_key(key: str) -> str:
    """A `name_key` without the generic words (`PPUH`, `i Wspólnicy`, `Transport`): what tells names apart."""
    words = [word for word in key.split() if word not in GENERIC_WORDS]
    return " ".join(words) if words else key


def post_code_key(raw: str | None) -> str | None:
    """Post code digits only (`00-950`, `00950`, `00 950` are one code); None when empty."""
    digits = "".join(ch for ch in (raw or "") if ch.isdigit())
    return digits or None


def city_key(raw: str | None) -> str | None:
    key = name_key(raw)
    return key or None


# An e-mail shared by two records is not evidence that they are one client when the rest of the cards
# says otherwise: an accountant's or a group's address sits on the cards of several companies. At
# different post codes only near-identical names keep the match; without a post code to compare, names
# with nothing distinctive in common veto it. This only ever vetoes a match; names never create one.
SAME_NAME_SCORE = 85.0
UNRELATED_NAMES_SCORE = 60.0
# Words many unrelated company names share; two names agreeing only on these agree on nothing.
GENERIC_WORDS = frozenset(
    [
        *("i", "oraz", "w", "wspolnicy", "wspolnik", "firma", "ppuh", "fpuh", "phu", "phup", "pphu", "fhu"),
        *("przedsiebiorstwo", "handlowo", "uslugowe", "handlowe", "uslugowa", "produkcyjne", "zaklad", "uslug"),
        *("uslugi", "budowlanych", "budowlany", "biuro", "rachunkowe", "kancelaria", "hurtownia", "piekarnia"),
        *("drukarnia", "pracownia", "projektowa", "studio", "transport", "transportowa", "serwis", "logistyka"),
        *("budownictwo", "consulting", "meble", "it", "group", "grupa", "polska", "poland", "centrum", "sklep"),
    ]
)


def names_unrelated(name_a: str | None, name_b: str | None, post_code_a: str | None, post_code_b: str | None) -> bool:
    """True when two records sharing an e-mail look like different clients (see `SAME_NAME_SCORE`)."""
    key_a, key_b = name_key(name_a), name_key(name_b)
    if not key_a or not key_b:
        return False
    code_a, code_b = post_code_key(post_code_a), post_code_key(post_code_b)
    if code_a is not None and code_a == code_b:
        return False
    if code_a is not None and code_b is not None:
        # moved or another company: only names that agree in full and in their distinctive words stay matched
        full = fuzz.token_sort_ratio(key_a, key_b)
        return min(full, fuzz.token_sort_ratio(distinctive_key(key_a), distinctive_key(key_b))) < SAME_NAME_SCORE
    return fuzz.token_sort_ratio(distinctive_key(key_a), distinctive_key(key_b)) < UNRELATED_NAMES_SCORE


# Columns -------------------------------------------------------------------------------------------------


def _as_text(values: pd.Series) -> pd.Series:
    """Strings only (missing → ""), in pandas' string dtype so the `.str` methods run vectorised."""
    text = values.astype(object).where(values.notna(), "")
    return text.map(lambda v: v if isinstance(v, str) else str(v)).astype("str")


def _objects(values: np.ndarray, index: pd.Index) -> pd.Series:
    """A plain object column with None (not NaN) for "no key", so keys compare and hash as Python values."""
    return pd.Series(values, index=index, dtype=object)


def tax_keys(values: pd.Series) -> pd.Series:
    """`tax_key` of every value of a column (object dtype; None where there is no valid key)."""
    text = _as_text(values).str.strip()
    present = text.ne("").to_numpy()
    plain = text.str.fullmatch(_PLAIN_NIP).to_numpy() & present
    compact = text.str.replace(r"[ \-]", "", regex=True).str.upper().str.replace(r"^PL", "", regex=True)
    ten = plain & compact.str.fullmatch(r"[0-9]{10}").to_numpy()
    keys = np.full(len(values), None, dtype=object)
    if ten.any():
        candidates = compact.to_numpy(dtype=object)[ten]
        digits = np.frombuffer("".join(candidates).encode("ascii"), dtype=np.uint8).reshape(-1, 10) - ord("0")
        valid = (digits.astype(np.int64) @ _NIP_WEIGHTS) % 11 == 0
        valid &= (digits != digits[:, :1]).any(axis=1)  # all one digit (`0000000000`) is junk, not a NIP
        keys[np.flatnonzero(ten)[valid]] = candidates[valid]
    other = present & ~plain
    if other.any():
        raw = text.to_numpy(dtype=object)[other]
        distinct = {value: tax_key(value) for value in set(raw)}
        keys[other] = [distinct[value] for value in raw]
    return _objects(keys, values.index)


def email_keys(values: pd.Series) -> pd.Series:
    """`email_key` of every value of a column (None where it is not an address)."""
    folded = _as_text(values).str.strip().str.casefold()
    keys = folded.to_numpy(dtype=object)
    keys[~folded.str.contains("@", regex=False).to_numpy()] = None
    return _objects(keys, values.index)


def name_keys(values: pd.Series) -> pd.Series:
    text = _as_text(values).to_numpy(dtype=object)
    distinct = {value: name_key(value) for value in set(text)}
    return _objects(np.array([distinct[value] for value in text], dtype=object), values.index)


def post_code_keys(values: pd.Series) -> pd.Series:
    digits = _as_text(values).str.replace(r"\D", "", regex=True)
    keys = digits.to_numpy(dtype=object)
    keys[~digits.ne("").to_numpy()] = None
    return _objects(keys, values.index)


def names_unrelated_pairs(
    names_a: pd.Series, names_b: pd.Series, post_codes_a: pd.Series, post_codes_b: pd.Series
) -> np.ndarray:
    """`names_unrelated` for aligned columns of pairs (positionally), as a boolean array."""
    keys_a = name_keys(names_a.reset_index(drop=True)).to_numpy()
    keys_b = name_keys(names_b.reset_index(drop=True)).to_numpy()
    if len(keys_a) == 0:
        return np.zeros(0, dtype=bool)
    codes_a = post_code_keys(post_codes_a.reset_index(drop=True)).to_numpy()
    codes_b = post_code_keys(post_codes_b.reset_index(drop=True)).to_numpy()
    full = cpdist(list(keys_a), list(keys_b), scorer=fuzz.token_sort_ratio, workers=1)
    distinct_a = [distinctive_key(k) for k in keys_a]
    distinct_b = [distinctive_key(k) for k in keys_b]
    distinctive = cpdist(distinct_a, distinct_b, scorer=fuzz.token_sort_ratio, workers=1)
    named = (keys_a != "") & (keys_b != "")
    both_codes = pd.notna(codes_a) & pd.notna(codes_b)
    same_place = both_codes & (codes_a == codes_b)
    moved = both_codes & ~same_place & (np.minimum(full, distinctive) < SAME_NAME_SCORE)
    unplaced = ~both_codes & (distinctive < UNRELATED_NAMES_SCORE)
    return named & ~same_place & (moved | unplaced)
