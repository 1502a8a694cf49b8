"""`make bench`: start a private Redis, a fresh PostgreSQL database and the product's
processes, run each scenario (ingest, jobs, io, latency, scale, recovery, rebalance)
with its baseline measured in the same run, print the table and write
bench/results/latest.json.

    python -m bench                      # every scenario
    python -m bench ingest latency       # some of them
    BENCH_INGEST_FRAMES=20000 python -m bench ingest    # knobs: see bench/README.md

Exit status: 0 when every scenario ran (missed targets included: this is a
measurement, not a test), 1 when a scenario crashed or could not be run.
"""

import datetime
import json
import os
import platform
import signal
import sys
import time
import traceback

from bench import harness, readers
from bench.context import Bench
from bench.harness import RESULTS_DIR, ScenarioResult, env_float, log

SCENARIOS = ("ingest", "jobs", "io", "latency", "scale", "recovery", "rebalance")
# Rough worst-case seconds each needs; a scenario is skipped when the budget left is smaller.
NEEDS = {"ingest": 60, "jobs": 60, "io": 45, "latency": 80, "scale": 420, "recovery": 30, "rebalance": 300}


def scenario_module(name):
    import importlib

    return importlib.import_module(f"bench.{name}")


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def fmt(value, unit):
    if value is None:
        return "-"
    if unit in ("frames/s", "jobs/s"):
        return f"{value:,.0f}/s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "%":
        return f"{value:.2f} %"
    return f"{value:g}"


def table(results):
    header = ("scenario", "figure", "target", "measured", "baseline (same run)", "ratio", "met?")
    lines = []
    for res in results:
        if res.status != "ok" and not res.rows:
            lines.append(
                (
                    res.name,
                    f"{res.status.upper()}: {(res.error or '').strip().splitlines()[-1][:90]}",
                    "",
                    "",
                    "",
                    "",
                    "n/a",
                )
            )
            continue
        for row in res.rows:
            if row.error:
                lines.append((row.scenario, row.figure, row.target, "ERROR", "", "", "n/a"))
                continue
            baseline = row.baseline_shown or fmt(row.baseline, row.unit)
            if row.baseline_label:
                baseline = f"{baseline} ({row.baseline_label})"
            ratio = row.ratio_shown or (f"{row.ratio:.3g}x" if row.ratio is not None else "-")
            met = {True: "met", False: "MISSED", None: ""}[row.met]
            measured = row.measured_shown or fmt(row.measured, row.unit)
            lines.append((row.scenario, row.figure, row.target, measured, baseline, ratio, met))
        if res.status != "ok":
            lines.append((res.name, f"{res.status.upper()} part-way: see below", "", "", "", "", "n/a"))
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    out = [" | ".join(str(h).ljust(w) for h, w in zip(header, widths)), "-+-".join("-" * w for w in widths)]
    out += [" | ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def main(argv):
    wanted = [a for a in argv if not a.startswith("-")] or list(SCENARIOS)
    unknown = [w for w in wanted if w not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    budget = env_float("BENCH_BUDGET_SECS", 1200)
    signal.signal(signal.SIGTERM, _terminate)
    started_wall = datetime.datetime.now(datetime.timezone.utc)
    started = time.monotonic()
    bench = Bench()
    results = []
    loop = None
    fatal = None
    try:
        bench.setup()
        from tests.support.wsserver import LoopThread

        loop = LoopThread("bench-servers")
        for name in wanted:
            res = ScenarioResult(name)
            results.append(res)
            left = budget - (time.monotonic() - started)
            if left < NEEDS[name]:
                res.status = "skipped"
                res.error = f"skipped: {left:.0f}s of the {budget:g}s budget left, it needs about {NEEDS[name]}s"
                log(res.error)
                continue
            load = readers.loadavg()
            res.details["loadavg_at_start"] = load
            log(f"=== {name} === (load average {load:.2f} on {os.cpu_count()} cores)")
            if load > (os.cpu_count() or 1):
                res.details["busy_machine"] = True
                log(f"warning: the machine is busy (load {load:.2f}); figures of {name} will be skewed")
            t0 = time.monotonic()
            try:
                bench.reset()
                scenario_module(name).run(bench, loop, res)
            except Exception as exc:
                res.status = "crashed"
                res.error = "".join(traceback.format_exception(exc))
                log(f"{name} CRASHED: {exc!r}")
                for proc in bench.procs:
                    log(f"--- last lines of {proc.name} ({proc.log_path}) ---\n{proc.log_tail(8)}")
            finally:
                res.seconds = time.monotonic() - t0
                try:
                    bench.stop_all()
                except Exception as exc:
                    log(f"stopping processes after {name}: {exc!r}")
                log(f"{name}: {res.seconds:.1f}s")
    except BaseException as exc:
        fatal = "".join(traceback.format_exception(exc))
        log(f"bench aborted: {exc!r}")
    finally:
        if loop is not None:
            loop.close()
        bench.teardown()
    total = time.monotonic() - started

    print()
    rev = readers.revision()
    print(
        f"Orvanta bench at {rev['commit']}{' + uncommitted changes' if rev['changed_files'] else ''} "
        f"({os.cpu_count()} cores, Python {platform.python_version()}), {total:.0f}s in all; "
        f"ratio = measured / baseline (throughput: higher is better; times, latency, RSS, CPU: lower is better)"
    )
    print(table(results))
    print("\nSeconds per scenario: " + ", ".join(f"{res.name} {res.seconds:.0f}" for res in results))
    if bench.trimmed:
        print("\nTrimmed to fit the time budget (or by a BENCH_* knob):")
        for item in bench.trimmed:
            print(f"  - {item}")
    notes = [(res.name, row) for res in results for row in res.rows if row.note]
    if notes:
        print("\nNotes:")
        for name, row in notes:
            print(f"  - {name} / {row.figure}: {row.note}")
    busy = [f"{res.name} ({res.details['loadavg_at_start']:.1f})" for res in results if res.details.get("busy_machine")]
    if busy:
        print(
            f"\nThe machine was busy (1-min load average above {os.cpu_count()} cores) at the start of: "
            f"{', '.join(busy)}; compare ratios, not absolute figures."
        )
    problems = [res for res in results if res.status != "ok"]
    for res in problems:
        print(f"\n{res.name}: {res.status}\n{res.error}")
    if fatal:
        print(f"\nbench aborted:\n{fatal}")

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    report = {
        "started_at": started_wall.isoformat(),
        "duration_secs": total,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "revision": rev,
        "ratio": "measured / baseline",
        "trimmed": bench.trimmed,
        "aborted": fatal,
        "scenarios": {
            res.name: {
                "status": res.status,
                "error": res.error,
                "seconds": res.seconds,
                "rows": [row.as_json() for row in res.rows],
                "details": res.details,
            }
            for res in results
        },
    }
    path = RESULTS_DIR / "latest.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {path.relative_to(harness.ROOT)}; process logs in {harness.LOG_DIR.relative_to(harness.ROOT)}/")
    return 1 if (problems or fatal) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
