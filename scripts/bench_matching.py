"""Benchmark of the bulk client matcher on the labelled data set (not a test).

    .venv/bin/python -m scripts.bench_matching [--sizes 50000 100000 200000] [--json out.json]

Each size runs in a fresh subprocess, so its peak RSS is its own: the process generates `size` clients per
side (`sandbox.labelled`, not timed), then matches them three times from the raw records (frames, keys,
joins, vetoes; what the client sync does each run) and reports the median wall time, the peak RSS of the
process (data set included) and of the data set alone, and precision/recall against the known duplicates.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_SIZES = (50_000, 100_000, 200_000)
REPEATS = 3


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(size: int, seed: int) -> dict[str, Any]:
    """One size, in this process: generate, match `REPEATS` times, score the last result."""
    from fakturownia_sync.bulk_matching import crm_frame, fakturownia_frame, match_client_bases
    from sandbox.labelled import generate

    data = generate(seed, size, full_shape=False)
    rss_data = _peak_rss_mb()
    times = []
    result = None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = match_client_bases(fakturownia_frame(data.fakturownia), crm_frame(data.crm))
        times.append(time.perf_counter() - started)
    assert result is not None
    found = set(zip(result.matches["fakturownia_id"].tolist(), result.matches["crm_id"].tolist(), strict=True))
    true_positives = len(found & data.truth)
    return {
        "size_per_side": size,
        "fakturownia_clients": len(data.fakturownia),
        "crm_clients": len(data.crm),
        "true_pairs": len(data.truth),
        "matched_pairs": len(found),
        "false_merges": len(found - data.truth),
        "precision": round(true_positives / len(found), 5) if found else 1.0,
        "recall": round(true_positives / len(data.truth), 5) if data.truth else 1.0,
        "review_entries": len(result.review),
        "seconds_median": round(statistics.median(times), 3),
        "seconds_all": [round(t, 3) for t in times],
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "data_set_rss_mb": round(rss_data, 1),
    }


def _run_size(size: int, seed: int) -> dict[str, Any]:
    answer = subprocess.run(
        [sys.executable, "-m", "scripts.bench_matching", "--worker", str(size), "--seed", str(seed)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(answer.stdout.strip().splitlines()[-1])


def _table(rows: list[dict[str, Any]]) -> str:
    header = ("clients/side", "median s", "runs s", "peak RSS MB", "data MB", "precision", "recall", "false", "review")
    lines = [
        (
            f"{r['size_per_side']:,}",
            f"{r['seconds_median']:.2f}",
            " / ".join(f"{t:.2f}" for t in r["seconds_all"]),
            f"{r['peak_rss_mb']:.0f}",
            f"{r['data_set_rss_mb']:.0f}",
            f"{r['precision']:.4f}",
            f"{r['recall']:.4f}",
            str(r["false_merges"]),
            str(r["review_entries"]),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = [" | ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    out.append("-+-".join("-" * w for w in widths))
    out += [" | ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="clients per side")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # internal: measure one size and print JSON
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.seed)))
        return
    rows = []
    for size in args.sizes:
        rows.append(_run_size(size, args.seed))
        print(f"measured {size:,} clients per side", file=sys.stderr, flush=True)
    print(_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seed": args.seed, "repeats": REPEATS, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
