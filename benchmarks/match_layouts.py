"""Routing cost for the layouts that defeat an exact-value index, as the rule count grows.

    python benchmarks/match_layouts.py [--sizes 100,1000,10000] [--events 2000] [--seconds 1]
                                       [--layouts prefix,suffix,...] [--json]

Each layout is a realistic multi-tenant rules file in which every rule differs from the others
only by one operator's value: a landing bucket with a prefix per tenant, a suffix per kind, a
wildcard per tenant folder, numeric ranges on one topic, equals-ignore-case per customer, a
different attribute name per rule, and a `$or` of a bucket or a prefix. Events are drawn so that
most match exactly one rule and some match none. For each layout and size it reports events/s
through `RuleSet.route` (the fastest of repeated passes, one core), the cost per event relative
to the smallest size (the target: at most 3x from 100 to 10,000 rules), and the time to load
the rules. The issue-15 targets are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from match import rate  # noqa: E402

from triggers.events.model import PUBSUB_PUBLISHED, STORAGE_FINALIZED, Event  # noqa: E402
from triggers.rules import load_text  # noqa: E402

JOB = "projects/demo-project/locations/europe-west1/jobs/worker"


def _rule(i: int, on: str, match: dict) -> str:
    return (
        f"  - name: r{i}\n    on: {on}\n    job: {JOB}\n    match: {json.dumps({'data': match})}\n"
    )


def _storage(data: dict) -> Event:
    return Event(
        id="1", source="s", type=STORAGE_FINALIZED, kind="storage", form="cloudevent-binary",
        data={"bucket": "landing", "size": 10, **data},
    )  # fmt: skip


def _pubsub(attributes: dict, payload: dict) -> Event:
    message = {"attributes": attributes, "json": payload, "message_id": "1", "text": ""}
    return Event(
        id="1", source="s", type=PUBSUB_PUBLISHED, kind="pubsub", form="cloudevent-binary",
        data={"message": message, "topic": "projects/p/topics/metrics", "subscription": None},
    )  # fmt: skip


# layout -> (rule i -> (on, match), (rng, count) -> event)
LAYOUTS = {
    "prefix": (
        lambda i: ("storage.finalized", {"bucket": ["landing"], "name": [{"prefix": f"t{i}/"}]}),
        lambda rng, n: _storage({"name": f"t{rng.randrange(n + n // 10)}/in/a.csv"}),
    ),
    "suffix": (
        lambda i: ("storage.finalized", {"bucket": ["landing"], "name": [{"suffix": f".k{i}"}]}),
        lambda rng, n: _storage({"name": f"in/a.k{rng.randrange(n + n // 10)}"}),
    ),
    "wildcard": (
        lambda i: ("storage.finalized", {"name": [{"wildcard": f"tenants/t{i}/*.csv"}]}),
        lambda rng, n: _storage({"name": f"tenants/t{rng.randrange(n + n // 10)}/x/y.csv"}),
    ),
    "numeric": (
        lambda i: (
            "pubsub",
            {"message": {"json": {"v": [{"numeric": [">=", i * 10, "<", i * 10 + 10]}]}}},
        ),
        lambda rng, n: _pubsub({}, {"v": rng.randrange((n + n // 10) * 10)}),
    ),  # fmt: skip
    "ignore-case": (
        lambda i: (
            "pubsub",
            {"message": {"attributes": {"customer": [{"equals-ignore-case": f"Cust-{i}"}]}}},
        ),
        lambda rng, n: _pubsub({"customer": f"CUST-{rng.randrange(n + n // 10)}"}, {}),
    ),  # fmt: skip
    "attribute": (
        lambda i: ("pubsub", {"message": {"attributes": {f"flag-{i}": ["on"]}}}),
        lambda rng, n: _pubsub(
            {f"flag-{rng.randrange(n + n // 10)}": "on", "flag-x": "off", "source": "batch"}, {}
        ),
    ),
    "or": (
        lambda i: (
            "storage.finalized",
            {"$or": [{"bucket": [f"b{i}"]}, {"name": [{"prefix": f"p{i}/"}]}]},
        ),
        lambda rng, n: _storage(
            {"bucket": f"b{rng.randrange(2 * n)}", "name": f"p{rng.randrange(2 * n)}/x"}
        ),
    ),  # fmt: skip
}


def measure(layout: str, size: int, events: int, seconds: float, seed: int) -> dict:
    make_rule, make_event = LAYOUTS[layout]
    rng = random.Random(seed)
    text = "rules:\n" + "".join(_rule(i, *make_rule(i)) for i in range(size))
    gc.collect()
    started = time.perf_counter()
    rules = load_text(text, environ={})
    load_s = time.perf_counter() - started
    stream = [make_event(rng, size) for _ in range(events)]
    matched = sum(len(rules.route(e)) for e in stream) / len(stream)
    eps = rate(rules.route, stream, seconds)
    return {"layout": layout, "rules": size, "load_s": load_s, "eps": eps, "matches": matched}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for layout in args.layouts.split(","):
        for size in sizes:
            row = measure(layout, size, args.events, args.seconds, args.seed)
            results.append(row)
            print(
                f"{layout:<12} {size:>6} rules: {row['eps']:>10,.0f} ev/s,"
                f" load {row['load_s']:.2f} s, {row['matches']:.2f} matches/event",
                file=sys.stderr,
                flush=True,
            )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"\nPython {platform.python_version()} on {platform.machine()}; fastest pass, one core.\n"
    )
    print("| layout | rules | events/s | cost vs smallest | load (s) |")
    print("|---|---:|---:|---:|---:|")
    for layout in args.layouts.split(","):
        rows = [r for r in results if r["layout"] == layout]
        base = rows[0]["eps"]
        for r in rows:
            print(
                f"| {layout} | {r['rules']:,} | {r['eps']:,.0f} | {base / r['eps']:.2f}x"
                f" | {r['load_s']:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
