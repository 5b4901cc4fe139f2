"""Look-alike clients by name and place: suggestions for a human in the review list, never a merge.

Names are compared after `client_keys.name_key` (legal form, quotes, diacritics and case dropped) with
rapidfuzz's `token_sort_ratio`, only between records that share a post code (or, when a record has no
post code, a city): blocking keeps this linear in practice, and a post code shared by too many records
(`MAX_BLOCK_PAIRS`) is skipped rather than compared all-pairs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from rapidfuzz import fuzz
from rapidfuzz.process import cpdist

from fakturownia_sync.client_keys import name_keys, post_code_keys

SUGGESTION_SCORE = 85.0  # worth showing to a person
LOOKALIKE_SCORE = 93.0  # a new record this close to an existing one is held back for review, not created
MAX_BLOCK_PAIRS = 2_000
LIMIT = 3


def place_frame(ids: np.ndarray | list[int], names: list, post_codes: list, cities: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": np.asarray(ids, dtype=np.int64),
            "name": name_keys(pd.Series(names, dtype=object)).to_numpy(),
            "post_code": post_code_keys(pd.Series(post_codes, dtype=object)).to_numpy(),
            "city": name_keys(pd.Series(cities, dtype=object)).to_numpy(),
        }
    )


def _block_pairs(queries: pd.DataFrame, choices: pd.DataFrame, key: str) -> pd.DataFrame:
    left = queries[queries[key].notna() & queries[key].ne("")]
    right = choices[choices[key].notna() & choices[key].ne("")]
    if left.empty or right.empty:
        return pd.DataFrame(columns=["q", "c", "q_name", "c_name"])
    sizes = left[key].value_counts().mul(right[key].value_counts(), fill_value=0)
    small = sizes[(sizes > 0) & (sizes <= MAX_BLOCK_PAIRS)].index
    left, right = left[left[key].isin(small)], right[right[key].isin(small)]
    joined = left[["id", key, "name"]].merge(right[["id", key, "name"]], on=key, suffixes=("_q", "_c"))
    return joined.rename(columns={"id_q": "q", "id_c": "c", "name_q": "q_name", "name_c": "c_name"})[
        ["q", "c", "q_name", "c_name"]
    ]


def similar_names(
    queries: pd.DataFrame, choices: pd.DataFrame, *, min_score: float = SUGGESTION_SCORE, limit: int = LIMIT
) -> dict[int, list[tuple[int, float]]]:
    """For each query id, up to `limit` (choice id, score) with score ≥ `min_score`, best first."""
    if queries.empty or choices.empty:
        return {}
    by_post_code = _block_pairs(queries, choices, "post_code")
    no_post_code = queries[queries["post_code"].isna()]
    by_city = _block_pairs(no_post_code, choices, "city")
    pairs = pd.concat([by_post_code, by_city], ignore_index=True)
    pairs = pairs[pairs["q_name"].ne("") & pairs["c_name"].ne("")]
    if pairs.empty:
        return {}
    scores = cpdist(pairs["q_name"].tolist(), pairs["c_name"].tolist(), scorer=fuzz.token_sort_ratio, workers=1)
    pairs = pairs.assign(score=np.round(scores, 1))
    pairs = pairs[pairs["score"] >= min_score].sort_values(["q", "score", "c"], ascending=[True, False, True])
    pairs = pairs.drop_duplicates(["q", "c"]).groupby("q").head(limit)
    found: dict[int, list[tuple[int, float]]] = {}
    for q, c, score in zip(pairs["q"], pairs["c"], pairs["score"], strict=True):
        found.setdefault(int(q), []).append((int(c), float(score)))
    return found
