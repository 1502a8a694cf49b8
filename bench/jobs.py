"""jobs: the ingest burst end to end: from the first frame written until every
matching frame's Job row is `success` (script examples/echo, PostgreSQL, one
`celery -A config worker --concurrency 2`, prefork); jobs/s.

Baseline, same worker, same N: one plain Celery task per job, N send_task calls of
orvanta.run_trigger_job from a subprocess; from the first send_task until every row
is `success`.
"""

import time

from bench import product
from bench.harness import Row, env_float, env_int, log, wait_for
from bench.processes import read_json_line
from bench.servers import BurstServer, burst

TARGET = 3_000


def run(bench, loop, result):
    n = env_int("BENCH_JOBS", 10_000)
    cap = env_float("BENCH_JOBS_CAP_SECS", 75)
    frames = 2 * n
    if frames < 100_000:
        bench.trim(
            "jobs",
            f"burst of {frames:,} frames ({n:,} jobs) for both runs, instead of 100,000 (50,000 jobs) (BENCH_JOBS)",
        )
    details = result.details
    server = BurstServer(loop).start()
    try:
        worker = bench.start_worker("jobs-worker")
        ws = product.workspace("bench-jobs")

        # The product: listener -> broker -> worker -> rows.
        trigger = product.trigger(ws, "f/bench/jobs", server.url("/jobs"), filters=product.KIND_A)
        listener, port = bench.start_listener("jobs-listener")
        connection = server.wait_connection("/jobs", proc=listener)
        wait_for(lambda: product.connected(port) == 1, timeout=15, what="the jobs trigger to be connected")
        time.sleep(0.5)
        data, matching = burst(frames)
        started = server.fire(connection, data)
        done, seen, counts = product.wait_rows(ws, trigger.path, matching, started, cap, [listener, worker])
        secs = seen - started
        rate = done / secs
        details["product"] = {
            "jobs": matching,
            "success": done,
            "secs": secs,
            "rate": rate,
            "rows": counts,
            "listener": product.listener_counters(port),
        }
        log(f"jobs: product {rate:,.0f} jobs/s ({done:,}/{matching:,} success in {secs:.1f}s; rows {counts})")
        throttled = product.held_back(listener)
        bench.stop(listener)
        note = f"N = {matching:,} jobs, both runs"
        if throttled:
            note += f"; {throttled}"
            details["product"]["held_back"] = throttled
        if done < matching:
            note = f"PARTIAL: {done:,}/{matching:,} rows success when the {cap:g}s cap hit; rows {counts}"
            bench.trim("jobs", f"product run stopped at its {cap:g}s cap ({done:,}/{matching:,} rows success)")
            # What is left (queued, prefetched) must not run during the baseline.
            bench.stop(worker)
            bench.redis.flush()
            worker = bench.start_worker("jobs-worker-2")

        # Baseline: N plain run_trigger_job tasks, same worker.
        base_trigger = product.trigger(ws, "f/bench/jobs_baseline", server.url("/unused"), enabled=False)
        spec = product.spec_file(base_trigger)
        client = bench.client("jobs-baseline", ["enqueue", str(matching), spec], stdout_pipe=True)
        first_guess = time.monotonic()
        base_done, base_seen, base_counts = product.wait_rows(
            ws,
            base_trigger.path,
            matching,
            first_guess,
            cap,
            [worker],
        )
        out = read_json_line(client, timeout=30)
        base_secs = base_seen - out["first"]
        base_rate = base_done / base_secs
        bench.stop(client)
        details["baseline"] = {
            "jobs": matching,
            "success": base_done,
            "secs": base_secs,
            "rate": base_rate,
            "rows": base_counts,
            "enqueue_secs": out["last"] - out["first"],
        }
        log(f"jobs: plain Celery {base_rate:,.0f} jobs/s ({base_done:,}/{matching:,} success in {base_secs:.1f}s)")
        if base_done < matching:
            note += f"; baseline PARTIAL: {base_done:,}/{matching:,} when the {cap:g}s cap hit"
            bench.trim("jobs", f"baseline stopped at its {cap:g}s cap ({base_done:,}/{matching:,} rows success)")
        result.rows.append(
            Row(
                "jobs",
                "jobs executed and recorded/s, 1 worker x2",
                "jobs/s",
                f">= {TARGET:,}",
                rate >= TARGET,
                rate,
                base_rate,
                "1 Celery task per job",
                note=note,
            ),
        )
    finally:
        server.stop()
