"""io: I/O-bound jobs. A burst of 200 frames, each a job of the bench script `sleep`
(bench/runnables/sleep.py: waits 0.1 s, as an HTTP call would), through the listener
to one `celery -A config worker --concurrency 4` (prefork); seconds from the first
frame written until every Job row is `success` (PostgreSQL, polled every 20 ms).

Baselines: the same jobs as one plain Celery task each (N send_task calls of
orvanta.run_trigger_job from a subprocess, same worker, same message), from the
first send_task until every row is `success`; and the ideal, jobs x sleep /
concurrency (every pool process busy all the time, nothing but the sleep costing
anything).
"""

import json
import time

from bench import product
from bench.harness import Row, env_float, env_int, log, wait_for
from bench.processes import read_json_line
from bench.servers import BurstServer, encode_server_frames

SCRIPT = "sleep"
# Targets on the ratios measured / plain Celery and measured / ideal.
PLAIN_TARGET = 1.15
IDEAL_TARGET = 1.3
POLL_SECS = 0.02


def job_msg(seq, sleep):
    return json.dumps({"seq": seq, "sleep": sleep})


def shown(done, n, secs):
    """How a run that did not finish within its cap shows (None when it finished)."""
    return None if done >= n else f"> {secs:.2f} s (PARTIAL: {done:,}/{n:,})"


def run(bench, loop, result):
    n = env_int("BENCH_IO_JOBS", 200)
    sleep = env_float("BENCH_IO_SLEEP_SECS", 0.1)
    concurrency = env_int("BENCH_IO_CONCURRENCY", 4)
    ideal = n * sleep / concurrency
    # Enough for every job to run one after the other, and then some.
    cap = n * sleep + 15
    if (n, sleep, concurrency) != (200, 0.1, 4):
        bench.trim(
            "io", f"{n:,} jobs of {sleep:g}s on --concurrency {concurrency} instead of 200 of 0.1s on 4 (BENCH_IO_*)"
        )
    details = result.details
    details["ideal_secs"] = ideal
    server = BurstServer(loop).start()
    try:
        worker = bench.start_worker("io-worker", concurrency=concurrency)
        ws = product.workspace("bench-io")

        # The product: listener -> broker -> worker -> rows.
        trigger = product.trigger(ws, "f/bench/io", server.url("/io"), script_path=SCRIPT)
        listener, port = bench.start_listener("io-listener")
        connection = server.wait_connection("/io", proc=listener)
        wait_for(lambda: product.connected(port) == 1, timeout=15, what="the io trigger to be connected")
        time.sleep(0.5)
        started = server.fire(connection, encode_server_frames([job_msg(seq, sleep) for seq in range(n)]))
        done, seen, counts = product.wait_rows(
            ws, trigger.path, n, started, cap, [listener, worker], interval=POLL_SECS
        )
        secs = seen - started
        details["product"] = {
            "jobs": n,
            "success": done,
            "secs": secs,
            "rows": counts,
            "listener": product.listener_counters(port),
        }
        log(f"io: product {secs:.2f}s for {done:,}/{n:,} jobs (ideal {ideal:.2f}s; rows {counts})")
        bench.stop(listener)
        if done < n:
            bench.trim("io", f"product run stopped at its {cap:g}s cap ({done:,}/{n:,} rows success)")
            # What is left (queued, prefetched) must not run during the baseline.
            bench.stop(worker)
            bench.redis.flush()
            worker = bench.start_worker("io-worker-2", concurrency=concurrency)

        # Baseline: N plain run_trigger_job tasks, same worker, same message.
        base_trigger = product.trigger(
            ws, "f/bench/io_baseline", server.url("/unused"), enabled=False, script_path=SCRIPT
        )
        spec = product.spec_file(base_trigger)
        client = bench.client("io-baseline", ["enqueue", str(n), spec, job_msg(0, sleep)], stdout_pipe=True)
        first_guess = time.monotonic()
        base_done, base_seen, base_counts = product.wait_rows(
            ws, base_trigger.path, n, first_guess, cap, [worker], interval=POLL_SECS
        )
        out = read_json_line(client, timeout=30)
        base_secs = base_seen - out["first"]
        bench.stop(client)
        details["baseline"] = {
            "jobs": n,
            "success": base_done,
            "secs": base_secs,
            "rows": base_counts,
            "enqueue_secs": out["last"] - out["first"],
        }
        log(f"io: plain Celery {base_secs:.2f}s for {base_done:,}/{n:,} jobs")
        if base_done < n:
            bench.trim("io", f"baseline stopped at its {cap:g}s cap ({base_done:,}/{n:,} rows success)")

        measured = secs if done >= n else None
        plain = base_secs if base_done >= n else None
        result.rows += [
            Row(
                "io",
                f"{n:,} jobs x {sleep:g}s sleep, burst -> all success, 1 worker x{concurrency}",
                "s",
                f"<= {PLAIN_TARGET:g}x plain",
                measured is not None and plain is not None and measured / plain <= PLAIN_TARGET,
                measured,
                plain,
                "1 Celery task per job",
                higher_is_better=False,
                note=f"N = {n:,} jobs of {sleep:g}s, both runs",
                measured_shown=shown(done, n, secs),
                baseline_shown=shown(base_done, n, base_secs),
            ),
            Row(
                "io",
                "the same run against the ideal",
                "s",
                f"<= {IDEAL_TARGET:g}x ideal",
                measured is not None and measured / ideal <= IDEAL_TARGET,
                measured,
                ideal,
                f"ideal: {n:,} x {sleep:g}s / {concurrency}",
                higher_is_better=False,
                measured_shown=shown(done, n, secs),
            ),
        ]
    finally:
        server.stop()
