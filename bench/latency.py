"""latency: a rate sweep on one trigger with can_return_message and examples/echo:
steady 5, 20, 50, 100, 200 and 300 frames/s, one rate after the other on the same
connection, each for BENCH_LATENCY_SECS after BENCH_LATENCY_WARMUP_SECS (sent but not
counted). The server sends each frame at its deadline on a fixed schedule (start +
seq / rate, so a late frame does not delay the next ones), stamps it with a sequence
number and its send time, and measures frame -> echoed result when the result comes
back on the socket; p50 and p99 per rate.

Baseline, same worker, at 200 frames/s (the sweep's highest rate when 200 is not
swept): the plain Celery round trip. A subprocess send_task's one
orvanta.run_trigger_job per message (stamped and paced the same way) and the bench
process receives each result through Redis pub/sub on the trigger's result channel
(orvanta_triggers.bus.results_channel), with no listener running.
"""

import asyncio
import json
import os
import threading
import time

from bench import product
from bench.harness import BenchError, Row, env_float, log, wait_for
from bench.hub import Hub
from bench.processes import read_json_line
from tests.support.percentiles import percentile

RATES = (5, 20, 50, 100, 200, 300)
BASELINE_RATE = 200
P50_TARGET_MS = 6.0
P99_TARGET_MS = 20.0
PAD = "x" * 40


def stamped(seq, warm):
    return json.dumps({"seq": seq, "t": time.monotonic(), "w": warm, "pad": PAD})


def swept_rates():
    """Frames/s to sweep: BENCH_LATENCY_RATES (comma-separated), else RATES."""
    value = os.environ.get("BENCH_LATENCY_RATES", "")
    return tuple(float(rate) for rate in value.split(",") if rate.strip()) or RATES


async def send_at_rate(conn, rate, secs, warmup, first_seq):
    """Send (warmup + secs) * rate stamped frames on conn's socket, numbered from
    first_seq, each at its deadline on a fixed schedule."""
    loop = asyncio.get_running_loop()
    period = 1.0 / rate
    total = int((secs + warmup) * rate)
    warm_n = int(warmup * rate)
    start = loop.time() + 0.01
    late = 0
    max_late = 0.0
    for i in range(total):
        at = start + i * period
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lateness = loop.time() - at
        if lateness > 0.005:
            late += 1
        max_late = max(max_late, lateness)
        if conn.ws is None:
            raise BenchError(f"the latency connection closed after {first_seq + i} frames")
        await conn.ws.send(stamped(first_seq + i, i < warm_n))
    return {
        "rate": rate,
        "sent": total,
        "measured": total - warm_n,
        "sent_late_5ms": late,
        "max_late_ms": max_late * 1000.0,
    }


def latencies(arrivals, seqs):
    """Milliseconds from send to arrival of every non-warm-up stamped message whose
    sequence number is in `seqs`."""
    out, seen = [], set()
    for arrived, text in arrivals:
        try:
            data = json.loads(text)
        except (ValueError, TypeError):
            continue
        if not isinstance(data, dict) or data.get("seq") not in seqs or data.get("w") or data["seq"] in seen:
            continue
        seen.add(data["seq"])
        out.append((arrived - data["t"]) * 1000.0)
    return out


def wait_drained(count, expected, *, max_secs, idle_secs=3.0):
    """After the last send: wait until `count()` reaches `expected`, stops growing
    for idle_secs, or max_secs pass; the seconds waited."""
    started = time.monotonic()
    last, last_change = count(), started
    while True:
        time.sleep(0.1)
        now = time.monotonic()
        current = count()
        if current >= expected or now - started >= max_secs:
            return now - started
        if current != last:
            last, last_change = current, now
        elif now - last_change >= idle_secs:
            return now - started


def summary(values, expected):
    """Percentiles over every frame sent: a result that never came back counts as
    infinitely late (None when the percentile falls on one)."""
    lost = max(expected - len(values), 0)
    padded = values + [float("inf")] * lost

    def pct(p):
        value = percentile(padded, p)
        return None if value is None or value == float("inf") else value

    return {
        "received": len(values),
        "expected": expected,
        "lost": lost,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": max(values) if values else None,
    }


def shown(stats):
    """p50 / p99 as the table shows them ("lost" where a percentile falls on a lost result)."""
    return " / ".join("lost" if stats[key] is None else f"{stats[key]:.1f}" for key in ("p50_ms", "p99_ms")) + " ms"


def ratios(stats, base):
    """p50 / p99 ratios, measured / baseline, as the table shows them."""
    return " / ".join(
        f"{stats[key] / base[key]:.3g}x" if stats[key] is not None and base[key] else "-"
        for key in ("p50_ms", "p99_ms")
    )


def met(stats):
    """Both percentiles within their targets (a lost one is not)."""
    p50, p99 = stats["p50_ms"], stats["p99_ms"]
    return p50 is not None and p99 is not None and p50 <= P50_TARGET_MS and p99 <= P99_TARGET_MS


def per_rate(sweep, key):
    """The rates whose `key` is not zero, with its value ("5/s 3, 300/s 12")."""
    return ", ".join(f"{rate:g}/s {stats[key]:,}" for rate, stats in sweep.items() if stats[key])


def run(bench, loop, result):
    rates = swept_rates()
    secs = env_float("BENCH_LATENCY_SECS", 7)
    warmup = env_float("BENCH_LATENCY_WARMUP_SECS", 1)
    # After the last frame of a rate, results still coming are waited for this long at most.
    drain = env_float("BENCH_LATENCY_DRAIN_SECS", 10)
    base_rate = BASELINE_RATE if BASELINE_RATE in rates else max(rates)
    if BASELINE_RATE not in rates:
        bench.trim(
            "latency", f"no {BASELINE_RATE}/s in the sweep, plain Celery at {base_rate:g}/s (BENCH_LATENCY_RATES)"
        )
    details = result.details
    hub = Hub(loop).start()
    try:
        worker = bench.start_worker("latency-worker")
        ws = product.workspace("bench-latency")
        trigger = product.trigger(ws, "f/bench/latency", hub.url("/latency"), can_return_message=True)

        # The product: server -> listener -> broker -> worker -> pub/sub -> listener -> server.
        listener, port = bench.start_listener("latency-listener")
        conn = wait_for(lambda: hub.live_conn("/latency"), timeout=20, what="the latency trigger's connection")
        wait_for(lambda: product.connected(port) == 1, timeout=15, what="the latency trigger to be connected")
        time.sleep(0.5)
        sweep = {}
        next_seq = 0
        for rate in rates:
            mark = len(conn.messages)
            sent = loop.run(send_at_rate(conn, rate, secs, warmup, next_seq), timeout=secs + warmup + 30)
            sent["drain_secs"] = wait_drained(lambda: len(conn.messages) - mark, sent["sent"], max_secs=drain)
            if not worker.alive() or not listener.alive():
                raise BenchError(f"the worker or the listener died during the latency run at {rate:g}/s")
            seqs = range(next_seq, next_seq + sent["sent"])
            next_seq = seqs.stop
            stats = {**summary(latencies(conn.messages[mark:], seqs), sent["measured"]), **sent}
            sweep[rate] = stats
            log(
                f"latency: product at {rate:g}/s: p50 {stats['p50_ms']} ms, p99 {stats['p99_ms']} ms, "
                f"{stats['received']}/{stats['expected']} results, {stats['sent_late_5ms']} frames sent > 5 ms late"
            )
        details["product"] = {f"{rate:g}": stats for rate, stats in sweep.items()}
        details["listener"] = product.listener_counters(port)
        bench.stop(listener)
        if any(stats["lost"] for stats in sweep.values()):
            # Jobs still queued or prefetched would run during the baseline: start over.
            bench.stop(worker)
            bench.redis.flush()
            worker = bench.start_worker("latency-worker-2")

        # Baseline: plain Celery round trip through the same worker and result channel.
        from orvanta_triggers import bus

        arrivals = []
        stop = threading.Event()
        subscribed = threading.Event()

        def subscriber():
            pubsub = bus.client().pubsub()
            pubsub.subscribe(bus.results_channel(trigger.id))
            while not stop.is_set():
                message = pubsub.get_message(timeout=0.2)
                if message is None:
                    continue
                now = time.monotonic()
                if message["type"] == "subscribe":
                    subscribed.set()
                elif message["type"] == "message":
                    arrivals.append((now, json.loads(message["data"])["frame"]))
            pubsub.close()

        thread = threading.Thread(target=subscriber, name="rtt-subscriber", daemon=True)
        thread.start()
        try:
            wait_for(subscribed.is_set, timeout=10, what="the result channel subscription")
            spec = product.spec_file(trigger)
            client = bench.client(
                "latency-baseline", ["rtt", str(base_rate), str(secs), str(warmup), spec], stdout_pipe=True
            )
            out = read_json_line(client, timeout=secs + warmup + 60)
            drained = wait_drained(lambda: len(arrivals), out["sent"], max_secs=drain)
        finally:
            stop.set()
            thread.join(5)
        bench.stop(client)
        base_values = latencies(arrivals, range(out["sent"]))
        base_stats = {
            **summary(base_values, out["measured"]),
            "rate": base_rate,
            "sent": out["sent"],
            "drain_secs": drained,
        }
        details["baseline"] = base_stats
        log(
            f"latency: plain Celery at {base_rate:g}/s: p50 {base_stats['p50_ms']} ms, "
            f"p99 {base_stats['p99_ms']} ms, {base_stats['received']}/{base_stats['expected']} results"
        )

        note = (
            f"{secs:g}s per rate (+{warmup:g}s warm-up, not counted), the rates one after the other on one "
            f"connection; plain Celery measured at {base_rate:g}/s only"
        )
        if per_rate(sweep, "sent_late_5ms"):
            note += f"; frames sent > 5 ms after their deadline: {per_rate(sweep, 'sent_late_5ms')}"
        if per_rate(sweep, "lost") or base_stats["lost"]:
            note += (
                f"; results lost: {per_rate(sweep, 'lost') or 'none'} (baseline {base_stats['lost']:,}); a result "
                f"not back {drain:g}s after the last frame of its rate counts as infinitely late"
            )
        rows = []
        for rate, stats in sweep.items():
            base = base_stats if rate == base_rate else None
            rows.append(
                Row(
                    "latency",
                    f"frame -> result p50 / p99 at {rate:g}/s ({stats['expected']:,} frames)",
                    "ms",
                    f"<= {P50_TARGET_MS:g} / <= {P99_TARGET_MS:g} ms",
                    met(stats),
                    baseline_label="plain Celery + pub/sub" if base else "",
                    higher_is_better=False,
                    measured_shown=shown(stats),
                    baseline_shown=shown(base) if base else None,
                    ratio_shown=ratios(stats, base) if base else None,
                )
            )
        rows[0].note = note
        result.rows += rows
    finally:
        hub.shutdown()
