"""latency: 200 frames/s for 30 s on one trigger with can_return_message and
examples/echo. The server stamps each frame with a sequence number and its send
time and measures frame -> echoed result when the result comes back on the socket.

Baseline, same worker, same rate: the plain Celery round trip. A subprocess
send_task's one orvanta.run_trigger_job per message (stamped the same way) and the
bench process receives each result through Redis pub/sub on the trigger's result
channel (orvanta_triggers.bus.results_channel), with no listener running.

The first BENCH_LATENCY_WARMUP_SECS of each run are sent but not counted.
"""

import asyncio
import json
import threading
import time

from bench import product
from bench.harness import BenchError, Row, env_float, log, percentile, read_json_line, wait_for
from bench.servers import Hub

P50_TARGET_MS = 6.0
P99_TARGET_MS = 20.0
PAD = "x" * 40


def stamped(seq, warm):
    return json.dumps({"seq": seq, "t": time.monotonic(), "w": warm, "pad": PAD})


async def send_at_rate(conn, rate, secs, warmup):
    """Send (warmup + secs) * rate stamped frames on conn's socket, on schedule."""
    loop = asyncio.get_running_loop()
    period = 1.0 / rate
    total = int((secs + warmup) * rate)
    warm_n = int(warmup * rate)
    start = loop.time() + 0.01
    late = 0
    for seq in range(total):
        at = start + seq * period
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            late += 1
        if conn.ws is None:
            raise BenchError(f"the latency connection closed after {seq} frames")
        await conn.ws.send(stamped(seq, seq < warm_n))
    return {"sent": total, "measured": total - warm_n, "sent_late_5ms": late}


def latencies(arrivals):
    """Milliseconds from send to arrival of every non-warm-up stamped message."""
    out, seen = [], set()
    for arrived, text in arrivals:
        try:
            data = json.loads(text)
        except (ValueError, TypeError):
            continue
        if not isinstance(data, dict) or "seq" not in data or data.get("w") or data["seq"] in seen:
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


def run(bench, loop, result):
    rate = env_float("BENCH_LATENCY_RATE", 200)
    secs = env_float("BENCH_LATENCY_SECS", 30)
    warmup = env_float("BENCH_LATENCY_WARMUP_SECS", 2)
    # After the last frame, results still coming are waited for this long at most.
    drain = env_float("BENCH_LATENCY_DRAIN_SECS", 10)
    if secs != 30 or rate != 200:
        bench.trim("latency", f"{rate:g} frames/s for {secs:g}s instead of 200/s for 30s (BENCH_LATENCY_*)")
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
        sent = loop.run(send_at_rate(conn, rate, secs, warmup), timeout=secs + warmup + 30)
        sent["drain_secs"] = wait_drained(lambda: len(conn.messages), sent["sent"], max_secs=drain)
        if not worker.alive() or not listener.alive():
            raise BenchError("the worker or the listener died during the latency run")
        values = latencies(conn.messages)
        product_stats = {**summary(values, sent["measured"]), **sent, "listener": product.listener_counters(port)}
        details["product"] = product_stats
        bench.stop(listener)
        if product_stats["lost"]:
            # Jobs still queued or prefetched would run during the baseline: start over.
            bench.stop(worker)
            bench.redis.flush()
            worker = bench.start_worker("latency-worker-2")
        log(
            f"latency: product p50 {product_stats['p50_ms']} ms, p99 {product_stats['p99_ms']} ms, "
            f"{product_stats['received']}/{product_stats['expected']} results"
        )

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
                "latency-baseline", ["rtt", str(rate), str(secs), str(warmup), spec], stdout_pipe=True
            )
            out = read_json_line(client, timeout=secs + warmup + 60)
            drained = wait_drained(lambda: len(arrivals), out["sent"], max_secs=drain)
        finally:
            stop.set()
            thread.join(5)
        bench.stop(client)
        base_values = latencies(arrivals)
        base_stats = {**summary(base_values, out["measured"]), "sent": out["sent"], "drain_secs": drained}
        details["baseline"] = base_stats
        log(
            f"latency: plain Celery p50 {base_stats['p50_ms']} ms, p99 {base_stats['p99_ms']} ms, "
            f"{base_stats['received']}/{base_stats['expected']} results"
        )
        note = (
            f"{rate:g}/s for {secs:g}s (+{warmup:g}s warm-up); results back: "
            f"{product_stats['received']:,}/{product_stats['expected']:,} (baseline "
            f"{base_stats['received']:,}/{base_stats['expected']:,})"
        )
        if product_stats["lost"] or base_stats["lost"]:
            note += f"; a result not back {drain:g}s after the last frame counts as infinitely late"

        def row(name, key, target, **extra):
            value, base = product_stats[key], base_stats[key]
            lost_shown = f"> {drain:g} s after the run (lost)"
            return Row(
                "latency",
                f"frame -> result {name} at {rate:g}/s",
                "ms",
                f"<= {target:g} ms",
                value is not None and value <= target,
                value,
                base,
                "plain Celery + pub/sub",
                higher_is_better=False,
                measured_shown=None if value is not None else lost_shown,
                baseline_shown=None if base is not None else lost_shown,
                **extra,
            )

        result.rows += [row("p50", "p50_ms", P50_TARGET_MS, note=note), row("p99", "p99_ms", P99_TARGET_MS)]
    finally:
        hub.shutdown()
