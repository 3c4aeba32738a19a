"""Memory per loaded rule and load time, from the sources and from the compiled artifact.

    python benchmarks/memory.py [--sizes 1000,10000,50000] [--top 15] [--json]

For each size, realistic rules are generated (benchmarks/match.py's patterns, scoped by
bucket/topic, with the args, env and dedup key templates rules files have, some with
`limits:`, `batch:`, `when:`, a schedule or a secret) into a temporary directory and compiled
with `triggers compile`. Then, each in a fresh interpreter with triggers.rules imported:

* **load** — `triggers.rules.load(path, compiled=True)` as the function does (artifact), and
  `load(path)` (YAML + validation) for sizes up to --source-max, timed, no tracing;
* **memory** — the same load under tracemalloc: bytes still allocated once the RuleSet is
  built (after a collection), divided by the number of rules; with --top, the biggest
  allocation sites (by line) and the biggest object types (a gc walk of the rule set).

Memory is what Python allocated (tracemalloc), not resident size: fixed costs (lazy imports
loading the schema, the sandbox...) are included, which is why 1,000 rules show more per rule.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from match import make_patterns  # noqa: E402

STORAGE_ARGS = [
    "--input=gs://{{ data.bucket }}/{{ data.name }}",
    "--table={{ data.name | stem }}",
]
PUBSUB_ARGS = [
    "--message={{ data.message.message_id }}",
    "--kind={{ data.message.attributes.kind }}",
]
SCHEDULER_ARGS = ["--date={{ data.schedule_time[:10] }}"]
STORAGE_KEY = "{{ data.bucket }}/{{ data.name }}#{{ data.generation }}"
PUBSUB_KEY = "{{ data.message.message_id }}"


def distinct(i: int, pattern: dict) -> dict:
    """The pattern made the rule's own: its bucket, topic or Scheduler job, and one value that
    no other rule has (a tenant's prefix, a customer's kind), so that nothing can be shared."""
    data = json.loads(json.dumps(pattern["data"]))
    if "bucket" in data:
        data["bucket"] = [f"landing-{i}"]
        data["name"] = [{"prefix": f"tenant-{i}/"}]
    elif "topic" in data:
        data["topic"] = [f"projects/demo-project/topics/tenant-{i}"]
        data["message"]["attributes"]["kind"] = [f"order-{i}"]
    else:
        data["job_name"] = [f"job-{i}"]
    return {"type": pattern["type"], "data": data}


def rules_yaml(count: int, seed: int = 7, layout: str = "mixed") -> str:
    """A rules file of `count` realistic rules (deterministic for a seed). `mixed`: the patterns
    of benchmarks/match.py, which repeat values across rules (many buckets hold several rules);
    `distinct`: every rule has its own bucket/topic/job and values (one rule per tenant)."""
    rng = random.Random(seed)
    lines = ["project: demo-project", "region: europe-west1", "rules:"]
    for i, (event_type, pattern) in enumerate(make_patterns(count, rng)):
        if layout == "distinct":
            pattern = distinct(i, pattern)
        data = dict(pattern["data"])
        name = f"rule-{i}"
        lines += [f"  - name: {name}", f"    on: {event_type}", f"    job: worker-{i % 40}"]
        if "bucket" in data:
            lines.append(f"    bucket: {data.pop('bucket')[0]}")
            args, env, key = STORAGE_ARGS, {"GENERATION": "{{ data.generation }}"}, STORAGE_KEY
        elif "topic" in data:
            lines.append(f"    topic: {data.pop('topic')[0].rsplit('/', 1)[1]}")
            args, env, key = PUBSUB_ARGS, {"TENANT": f"tenant-{i % 97}"}, PUBSUB_KEY
        else:
            args, env, key = SCHEDULER_ARGS, {}, None
            if i % 9 == 2:
                lines += ['    schedule: "0 2 * * *"', "    time_zone: Europe/Berlin"]
        lines.append(f"    match: {json.dumps({'data': data})}")
        if i % 50 == 3:
            lines.append("    when: \"event.id != ''\"")
        lines.append("    overrides:")
        lines.append(f"      args: {json.dumps(args)}")
        if env or i % 25 == 1:
            lines.append("      env:")
            for env_name, value in env.items():
                lines.append(f"        {env_name}: {json.dumps(value)}")
            if i % 25 == 1:
                lines.append("        API_TOKEN: {secret: api-token, version: latest}")
        if i % 4 == 0:
            lines.append("      timeout: 30m")
        if key is not None or i % 10 == 0:
            lines.append("    dedup:")
            if key is not None:
                lines.append(f"      key: {json.dumps(key)}")
            if i % 10 == 0:
                lines.append("      window: 1d")
        if i % 20 == 5:
            lines += ["    limits:", "      rate: 10/s"]
        if i % 100 == 7 and "bucket" in pattern["data"]:
            lines += ["    batch:", "      window: 2m", "      max_events: 1000"]
    return "\n".join(lines) + "\n"


_CHILD = r"""
import gc, json, sys, time, tracemalloc
from collections import Counter
import triggers.rules as rules_package
from triggers.rules import load

path, mode, trace, top = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
compiled = mode == "compiled"
out = {}
if trace:
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot() if top else None
    base = tracemalloc.get_traced_memory()[0]
    ruleset = load(path, compiled=compiled)
    gc.collect()
    out["bytes"] = tracemalloc.get_traced_memory()[0] - base
    if top:
        after = tracemalloc.take_snapshot()
        stats = after.compare_to(before, "lineno")[:top]
        out["lines"] = [[str(s.traceback[0]), s.size_diff, s.count_diff] for s in stats]
        tracemalloc.stop()
        # Objects reachable from the rule set, by type (shared objects counted once).
        seen, sizes, counts = set(), Counter(), Counter()
        stack = [ruleset]
        while stack:
            obj = stack.pop()
            if id(obj) in seen or isinstance(obj, type) or type(obj).__name__ == "module":
                continue
            seen.add(id(obj))
            name = type(obj).__name__
            sizes[name] += sys.getsizeof(obj)
            counts[name] += 1
            stack.extend(gc.get_referents(obj))
        out["types"] = [[n, s, counts[n]] for n, s in sizes.most_common(top)]
else:
    began = time.perf_counter()
    ruleset = load(path, compiled=compiled)
    out["seconds"] = time.perf_counter() - began
out["rules"] = len(ruleset)
print(json.dumps(out))
"""


def child(path: Path, mode: str, trace: bool, top: int = 0) -> dict:
    env = dict(os.environ, PYTHONHASHSEED="0")
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), mode, "1" if trace else "0", str(top)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{mode} load failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--runs", type=int, default=3, help="timed loads per size (best kept)")
    parser.add_argument(
        "--source-max", type=int, default=10000, help="largest size to also load from YAML"
    )
    parser.add_argument("--top", type=int, default=0, help="show the biggest sites and types")
    parser.add_argument("--layout", choices=("mixed", "distinct"), default="mixed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from triggers.rules.compiled import compile_rules

    results = []
    with tempfile.TemporaryDirectory(prefix="triggers-memory-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"rules-{size}.yaml"
            path.write_text(rules_yaml(size, layout=args.layout), encoding="utf-8")
            compile_rules(path, environ={})
            for mode in ("compiled", "source"):
                if mode == "source" and size > args.source_max:
                    continue
                memory = child(path, mode, trace=True, top=args.top)
                assert memory["rules"] == size, memory
                seconds = min(child(path, mode, trace=False)["seconds"] for _ in range(args.runs))
                row = {
                    "layout": args.layout,
                    "rules": size,
                    "load": mode,
                    "seconds": round(seconds, 3),
                    "bytes_per_rule": round(memory["bytes"] / size),
                    "total_mib": round(memory["bytes"] / 2**20, 1),
                }
                results.append(row)
                if not args.json:
                    print(
                        f"{args.layout:<8} {size:>7,} rules  {mode:<8}  load {seconds:7.3f} s   "
                        f"{memory['bytes'] / size / 1024:6.2f} KiB/rule   "
                        f"{memory['bytes'] / 2**20:8.1f} MiB",
                        flush=True,
                    )
                    for what, bytes_, count in memory.get("lines", []) + memory.get("types", []):
                        per_rule = f"{bytes_ / size:8.0f} B/rule {count / size:6.2f} obj/rule"
                        print(f"      {per_rule}  {what}")
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "results": results}, indent=1))


if __name__ == "__main__":
    started = time.time()
    main()
    print(f"({time.time() - started:.0f} s)", file=sys.stderr)
