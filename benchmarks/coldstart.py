"""Cold start: a fresh interpreter to the first answered event, triggers vs a hand-written function.

    python benchmarks/coldstart.py [--runs 10] [--server gunicorn|werkzeug] [--import-runs N]
                                   [--rules compiled|source] [--floor] [--timeout 90] [--json]

Target: the median time to the first answer of `triggers` at most 1.15x that of
benchmarks/_minimal_function.py, a hand-written function that imports functions-framework,
google-cloud-run and google-cloud-firestore and makes the same calls (Firestore `create`,
`jobs.run` with overrides, Firestore `update`; its clients are created at module import).

Each run spawns a fresh process

    functions-framework --target handle_http --source SOURCE --host 127.0.0.1 --port P

(`--server werkzeug`: the same command line with gunicorn hidden, functions-framework's
fallback), polls the port every 5 ms, POSTs one new storage-finalized event (the binary-mode
CloudEvent of config/events/, with a fresh id, object name and generation: never a duplicate)
and stops the clock at the 2xx answer, which must say the job was launched. The time runs from
just before the spawn to the answer; the time until the port first accepted a connection is
reported as well (under gunicorn: the arbiter has imported the function and bound the socket).

Both functions talk to the same emulators, started once here: the official Firestore emulator
(`gcloud emulators firestore start`; the ledger / dedup collection, `TRIGGERS_LEDGER=firestore`)
and the Cloud Run emulator in this process (every job runs `/bin/true`). triggers reads
config/rules.yaml (4 rules); the event matches `csv-ingest`. With `--rules compiled` (the
default) the rules are copied to the run's temporary directory and `triggers compile`d there
with the function's environment, so the function starts from the pre-validated artifact, as a
deployment that ships `rules.yaml.compiled.json` does; `--rules source`: from the YAML alone
(every start validates it). `--floor` adds a third variant, benchmarks/_floor_function.py: the
minimal function plus triggers' settings (`Settings()`, standard library only since issue 15:
~22 M instructions where pydantic-settings took ~482 M), the part of triggers' start that
nothing skips, i.e. the best ratio triggers could reach; it is now within noise of the minimal
function itself. One untimed warm-up run of each
function comes first (it fills the bytecode cache, a temporary PYTHONPYCACHEPREFIX unless
--bytecode inherit; the page cache; the emulators' own warm-up); then the
variants alternate, --runs times each, and each server is stopped (its process group) and the
emulator drained before the next spawn.

Import time is measured separately, in fresh interpreters (the time of the import statements
only, no interpreter start-up): functions_framework alone, triggers/main.py loaded by path as
functions-framework does, the same plus google.cloud.firestore and google.cloud.run_v2 (what
triggers has imported by the time it answers), and the minimal function (clients included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _serving import (  # noqa: E402
    MINIMAL_SOURCE,
    ROOT,
    SAMPLE_RULES,
    SERVERS,
    TRIGGERS_SOURCE,
    TRIVIAL_JOBS_YAML,
    EventFactory,
    FirestoreEmulator,
    ServedFunction,
    add_server_options,
    bytecode_note,
    install_sigterm,
    machine_note,
    median,
    nearest_rank,
    quiet_cloud_run_emulator,
    run_main,
    say,
    server_env,
    server_threads,
)

from triggers.emulators.server import EmulatorServer  # noqa: E402

# 1.2 until issue 15; the settings no longer cost pydantic-settings (docs/performance.md).
TARGET_RATIO = 1.15
VARIANTS = ("triggers", "minimal")

_LOAD_BY_PATH = (
    "import importlib.util\n"
    "spec = importlib.util.spec_from_file_location('main', {path!r})\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "sys.modules['main'] = module\n"
    "spec.loader.exec_module(module)\n"
)
IMPORTS = {
    "functions_framework": "import functions_framework\n",
    "triggers/main.py": _LOAD_BY_PATH.format(path=str(TRIGGERS_SOURCE)),
    "triggers/main.py + firestore + run_v2": _LOAD_BY_PATH.format(path=str(TRIGGERS_SOURCE))
    + "import google.cloud.firestore, google.cloud.run_v2\n",
    "minimal (clients at import)": _LOAD_BY_PATH.format(path=str(MINIMAL_SOURCE)),
}
_TIMER = "import sys, time\nt0 = time.perf_counter()\n{code}print(time.perf_counter() - t0)\n"


def stats(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {
        "n": len(s),
        "median_s": round(median(s), 4),
        "min_s": round(s[0], 4) if s else float("nan"),
        "p90_s": round(nearest_rank(s, 0.90), 4),
        "max_s": round(s[-1], 4) if s else float("nan"),
    }


def compiled_rules(tmp_path: Path, env: dict[str, str]) -> Path:
    """A copy of the sample rules with its artifact, compiled for the function's environment."""
    from triggers.rules.compiled import compile_rules

    rules = tmp_path / "rules" / SAMPLE_RULES.name
    rules.parent.mkdir()
    rules.write_bytes(SAMPLE_RULES.read_bytes())
    compile_rules(rules, environ=env)
    return rules


def one_run(
    variant: str,
    server: str,
    env: dict[str, str],
    events: EventFactory,
    tag: str,
    i: int,
    log_dir: Path,
    timeout: float,
    emu: EmulatorServer,
) -> dict[str, Any]:
    headers, body = events.make(f"{variant}-{tag}", i)
    served = ServedFunction(variant, server, env, log_dir / f"{variant}-{server}.log")
    try:
        served.spawn()
        result = served.first_answer(headers, body, timeout)
    finally:
        served.stop()
    emu.wait_idle(60)  # the execution's tasks must not run into the next measurement
    if result["outcome"] != "launched":
        raise RuntimeError(
            f"{variant}: the event was not launched: {result['status']} "
            f"{result['body']}\n{served.output()}"
        )
    if "validating the rules instead" in served.output():  # the start log says so
        raise RuntimeError(
            f"{variant} did not start from the compiled rules (was triggers/rules "
            f"edited during the run?):\n{served.output()}"
        )
    return result


def import_times(envs: dict[str, dict[str, str]], runs: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, code in IMPORTS.items():
        env = envs["triggers" if name.startswith("triggers") else "minimal"]
        values = []
        for _ in range(runs):
            done = subprocess.run(
                [sys.executable, "-c", _TIMER.format(code=code)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode != 0:
                raise RuntimeError(f"importing {name} failed:\n{done.stderr[-2000:]}")
            values.append(float(done.stdout.strip().splitlines()[-1]))
        out[name] = stats(values)
        say(f"import {name}: median {out[name]['median_s'] * 1000:.0f} ms")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed cold starts per variant")
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default="gunicorn",
        help="gunicorn: what `functions-framework` uses when gunicorn is "
        "installed (the default); werkzeug: its fallback",
    )
    parser.add_argument(
        "--import-runs",
        type=int,
        default=None,
        help="fresh interpreters per import measurement (default: --runs; 0: skip)",
    )
    add_server_options(parser)
    parser.add_argument(
        "--rules",
        choices=("compiled", "source"),
        default="compiled",
        help="compiled: triggers starts from `triggers compile`'s artifact "
        "(the default); source: from config/rules.yaml, validated at start",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time the minimal function plus triggers' Settings()",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    variants = VARIANTS + (("floor",) if args.floor else ())
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    import_runs = args.runs if args.import_runs is None else args.import_runs
    reason = FirestoreEmulator.unavailable()
    if reason is not None:
        parser.error(f"the Firestore emulator is needed: {reason}")

    install_sigterm()
    note = machine_note()
    run_id = uuid.uuid4().hex[:8]
    events = EventFactory(run_id)
    times: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="triggers-bench-coldstart-") as tmp:
        tmp_path = Path(tmp)
        emu = quiet_cloud_run_emulator(tmp_path, TRIVIAL_JOBS_YAML)
        firestore = FirestoreEmulator(tmp_path)
        pycache = tmp_path / "pycache" if args.bytecode == "cached" else None
        emu.start()
        try:
            say(f"Cloud Run emulator on {emu.url}; starting the Firestore emulator...")
            started = time.perf_counter()
            firestore.start()
            say(
                f"Firestore emulator on {firestore.host_port} after "
                f"{time.perf_counter() - started:.1f}s"
            )
            envs = {
                v: server_env(
                    v,
                    cloud_run=emu.url,
                    firestore=firestore.host_port,
                    collection=f"bench-coldstart-{v}-{run_id}",
                    pycache=pycache,
                )
                for v in variants
            }
            if args.rules == "compiled":
                envs["triggers"]["TRIGGERS_RULES"] = str(compiled_rules(tmp_path, envs["triggers"]))
            for variant in variants:
                say(f"[{variant}] untimed warm-up run...")
                warm = one_run(
                    variant,
                    args.server,
                    envs[variant],
                    events,
                    "warmup",
                    0,
                    tmp_path,
                    args.timeout,
                    emu,
                )
                say(f"[{variant}] warm-up answered after {warm['answer_s']:.3f}s")
            for i in range(args.runs):
                order = variants if i % 2 == 0 else variants[::-1]
                for variant in order:
                    result = one_run(
                        variant,
                        args.server,
                        envs[variant],
                        events,
                        "run",
                        i,
                        tmp_path,
                        args.timeout,
                        emu,
                    )
                    times[variant].append(result)
                    say(
                        f"[{i + 1}/{args.runs}] {variant}: first answer after "
                        f"{result['answer_s']:.3f}s (listening after "
                        f"{result['listening_s']:.3f}s, CPU {result['cpu_s']:.2f}s)"
                    )
            imports = {}
            if import_runs > 0:
                say(f"import times ({import_runs} fresh interpreters each)...")
                imports = import_times(envs, import_runs)
        finally:
            say("stopping the emulators...")
            firestore.stop()
            emu.stop()

    rows = {}
    for variant in variants:
        rows[variant] = {
            "first_answer": stats([r["answer_s"] for r in times[variant]]),
            "listening": stats([r["listening_s"] for r in times[variant]]),
            "cpu": stats([r["cpu_s"] for r in times[variant]]),
            "runs_s": [round(r["answer_s"], 4) for r in times[variant]],
        }

    def ratios(variant: str) -> tuple[float, float, float]:
        """(ratio of the medians, median of the paired runs' ratios, ratio of CPU medians)."""
        of_medians = (
            rows[variant]["first_answer"]["median_s"] / rows["minimal"]["first_answer"]["median_s"]
        )
        # Run i of each variant ran back to back (alternating order): their ratio cancels most
        # of what a busy machine adds to both.
        paired_runs = median(
            [
                t["answer_s"] / m["answer_s"]
                for t, m in zip(times[variant], times["minimal"], strict=True)
            ]
        )
        cpu = rows[variant]["cpu"]["median_s"] / max(rows["minimal"]["cpu"]["median_s"], 1e-9)
        return of_medians, paired_runs, cpu

    ratio, paired, cpu_ratio = ratios("triggers")
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    server_desc = (
        f"gunicorn (functions-framework default: 1 worker, gthread, {server_threads()} threads)"
        if args.server == "gunicorn"
        else "werkzeug (functions-framework fallback: Flask dev server, threaded)"
    )
    result = {
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "machine": note,
        "server": server_desc,
        "bytecode": bytecode_note(args.bytecode),
        "rules": args.rules,
        "runs": args.runs,
        "variants": rows,
        "ratio_median": round(ratio, 3),
        "ratio_paired_median": round(paired, 3),
        "cpu_ratio_median": round(cpu_ratio, 3),
        **({"floor_ratios": [round(r, 3) for r in ratios("floor")]} if args.floor else {}),
        "target_ratio": TARGET_RATIO,
        "verdict": verdict,
        "import_s": imports,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    print(
        f"\nPython {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores"
        f"{'; ' + note if note else ''}. Server: {server_desc}; "
        f"{bytecode_note(args.bytecode)}. Firestore emulator ledger, Cloud Run emulator; "
        f"{args.runs} cold starts per variant, alternating.\n"
    )
    print(
        "| function | first answer median (s) | min (s) | p90 (s) | port open median (s) | "
        "first request median (s) | CPU to first answer median (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for variant in variants:
        first = rows[variant]["first_answer"]
        listening = rows[variant]["listening"]
        request = median([r["answer_s"] - r["listening_s"] for r in times[variant]])
        print(
            f"| {variant} | {first['median_s']:.3f} | {first['min_s']:.3f} | "
            f"{first['p90_s']:.3f} | {listening['median_s']:.3f} | {request:.3f} | "
            f"{rows[variant]['cpu']['median_s']:.2f} |"
        )
    if imports:
        print(f"\nImport time in a fresh interpreter ({import_runs} runs each):\n")
        print("| import | median (ms) | min (ms) |")
        print("|---|---:|---:|")
        for name, s in imports.items():
            print(f"| {name} | {s['median_s'] * 1000:.0f} | {s['min_s'] * 1000:.0f} |")
    print(
        f"\nCPU to first answer: user + system time of the server's processes (under "
        f"gunicorn the arbiter and its worker) when the answer arrived, "
        f"{os.sysconf('SC_CLK_TCK')} ticks/s; less sensitive to a busy machine than wall "
        f"time. Ratio of medians: {cpu_ratio:.2f}x."
    )
    print(
        f"\nratio triggers / minimal (median time to first answer): {ratio:.2f}x — "
        f"target <= {TARGET_RATIO}x: {verdict}; median of the {args.runs} paired runs' "
        f"ratios: {paired:.2f}x. Rules: {args.rules}."
    )
    if args.floor:
        floor = ratios("floor")
        print(
            f"floor (minimal + triggers' settings) / minimal: {floor[0]:.2f}x (paired runs "
            f"{floor[1]:.2f}x, CPU {floor[2]:.2f}x): the best triggers could do."
        )
    return 0


if __name__ == "__main__":
    run_main(main)
