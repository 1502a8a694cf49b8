"""ingest: one trigger, a burst of ~100-byte JSON frames, a filter matching half of
them; frames/s from the first frame written to the moment the listener has handed
every matching job to the broker (its frames_dispatched counter). No worker runs, so
only ingest is measured.

Baselines, same burst server, each in a subprocess: a websocket-client recv loop
doing nothing else (the ceiling) and the naive loop (recv -> JSON filter ->
send_task per matching frame).
"""

import time

from bench import product
from bench.harness import BenchError, Row, env_float, env_int, log, wait_for
from bench.processes import read_json_line
from bench.servers import BurstServer, burst

TARGET = 10_000


def run(bench, loop, result):
    frames = env_int("BENCH_INGEST_FRAMES", 100_000)
    naive_frames = env_int("BENCH_NAIVE_FRAMES", 20_000)
    cap = env_float("BENCH_INGEST_CAP_SECS", 60)
    naive_cap = env_float("BENCH_NAIVE_CAP_SECS", 25)
    if frames != 100_000:
        bench.trim("ingest", f"burst of {frames:,} frames instead of 100,000 (BENCH_INGEST_FRAMES)")
    if naive_frames < frames:
        bench.trim("ingest", f"naive baseline on a burst of {naive_frames:,} frames (its rate does not depend on it)")
    details = result.details
    server = BurstServer(loop).start()
    try:
        data, matching = burst(frames)

        # Ceiling: websocket-client receiving, nothing else.
        client = bench.client("ingest-raw", ["raw", server.url("/raw"), str(frames)], stdout_pipe=True)
        started = server.fire(server.wait_connection("/raw", proc=client), data)
        out = read_json_line(client, timeout=cap)
        raw_rate = frames / (out["last"] - started)
        bench.stop(client)
        details["raw"] = {"frames": frames, "secs": out["last"] - started, "rate": raw_rate}
        log(f"ingest: raw websocket-client read loop {raw_rate:,.0f} frames/s")

        # Naive: recv -> filter -> send_task per matching frame.
        ws = product.workspace("bench-ingest")
        naive_trigger = product.trigger(
            ws, "f/bench/ingest_naive", server.url("/naive"), enabled=False, filters=product.KIND_A
        )
        spec = product.spec_file(naive_trigger, product.KIND_A)
        naive_data, _ = burst(naive_frames)
        client = bench.client(
            "ingest-naive", ["naive", server.url("/naive"), str(naive_frames), spec, str(naive_cap)], stdout_pipe=True
        )
        started = server.fire(server.wait_connection("/naive", proc=client), naive_data)
        out = read_json_line(client, timeout=naive_cap + 30)
        naive_rate = out["frames"] / (out["last"] - started)
        bench.stop(client)
        details["naive"] = {**out, "secs": out["last"] - started, "rate": naive_rate}
        if out.get("partial"):
            bench.trim("ingest", f"naive baseline stopped at its {naive_cap:g}s cap after {out['frames']:,} frames")
        log(f"ingest: naive loop {naive_rate:,.0f} frames/s ({out['sent']:,} send_task)")
        bench.redis.flush()

        # The product: runlisteners, no worker.
        trigger = product.trigger(ws, "f/bench/ingest", server.url("/ingest"), filters=product.KIND_A)
        listener, port = bench.start_listener("ingest-listener")
        connection = server.wait_connection("/ingest", proc=listener)
        wait_for(lambda: product.connected(port) == 1, timeout=15, what="the ingest trigger to be connected")
        time.sleep(0.5)
        before = product.dispatched(port)
        started = server.fire(connection, data)
        deadline = started + cap
        done = last_change_value = before
        last_change_at = started
        while True:
            done = product.dispatched(port)
            now = time.monotonic()
            if done is None:
                raise BenchError(
                    f"listener metrics stopped answering (alive: {listener.alive()}):\n{listener.log_tail()}"
                )
            if done != last_change_value:
                last_change_value, last_change_at = done, now
            if done - before >= matching or now >= deadline:
                break
            time.sleep(0.05)
        jobs = done - before
        secs = now - started
        partial = jobs < matching
        rate = jobs * (frames / matching) / secs
        queued = bench.redis.client().llen("celery")
        details["product"] = {
            "frames": frames,
            "matching": matching,
            "jobs_enqueued": jobs,
            "secs": secs,
            "rate": rate,
            "partial": partial,
            "broker_queue_length": queued,
            "listener": product.listener_counters(port),
            "trigger_id": trigger.id,
        }
        note = f"{frames:,} frames, {matching:,} jobs"
        if partial:
            note = (
                f"PARTIAL: {jobs:,.0f} of {matching:,} jobs enqueued when the {cap:g}s cap hit; "
                f"rate = frames covered / time"
            )
            bench.trim("ingest", f"product run stopped at its {cap:g}s cap ({jobs:,.0f}/{matching:,} jobs enqueued)")
        log(f"ingest: runlisteners {rate:,.0f} frames/s ({jobs:,.0f} jobs in {secs:.2f}s; broker queue {queued})")
        throttled = product.held_back(listener)
        if throttled:
            note += f"; {throttled} (with no worker, {jobs:,.0f} jobs in {queued:,} broker messages really waited)"
            details["product"]["held_back"] = throttled
        if partial and last_change_at > started:
            # How fast it went until dispatching stopped, for diagnosis.
            until = (last_change_value - before) * (frames / matching) / (last_change_at - started)
            details["product"]["rate_until_last_dispatch"] = until
            note += (
                f"; {until:,.0f} frames/s until the last job was dispatched, "
                f"{last_change_at - started:.1f}s after the first frame"
            )
        result.rows += [
            Row(
                "ingest",
                "frames/s, one listener (vs naive loop)",
                "frames/s",
                f">= {TARGET:,}",
                rate >= TARGET,
                rate,
                naive_rate,
                "naive recv->filter->send_task",
                note=note,
            ),
            Row(
                "ingest",
                "frames/s, one listener (vs raw recv ceiling)",
                "frames/s",
                "",
                None,
                rate,
                raw_rate,
                "websocket-client recv loop",
                note=f"ceiling: {frames:,} frames, recv only",
            ),
        ]
        bench.stop(listener)
    finally:
        server.stop()
