"""scale: 1,000 triggers on 1,000 server connections held by one listener.

The triggers are created first in a workspace then moved to the `free` plan (which
listeners ignore), the listener is started and measured with no connection, then
the workspace goes back to `enterprise` in one call: time to connect all is from
that call until the server holds all 1,000 connections. Then: listener RSS (from
/proc), idle CPU over BENCH_SCALE_IDLE_SECS. Then every trigger gets a 1 s heartbeat
(update_trigger, one by one) and, once all have reconnected with it, the server
measures heartbeat lateness (inter-arrival minus 1 s on each connection) over
BENCH_SCALE_HB_SECS.

Baseline: bare websocket-client threads holding as many idle connections, in a
subprocess (RSS delta, CPU, time to connect), then one thread per connection sending
a heartbeat every second, measured by the same server.
"""

import time

from bench import product
from bench.harness import (
    BenchError,
    Row,
    cpu_percent,
    env_float,
    env_int,
    log,
    percentile,
    read_json_line,
    rss_bytes,
    wait_for,
)
from bench.servers import Hub

RSS_TARGET_MB = 150
CPU_TARGET = 2.0
CONNECT_TARGET_S = 10.0
LATENESS_TARGET_MS = 50.0
HEARTBEAT = {"interval_secs": 1, "message": '{"hb":1}'}
MB = 1024 * 1024


def lateness(conns, since, until):
    """Milliseconds late of every heartbeat that arrived in (since, until], relative
    to the previous one on the same connection (inter-arrival minus 1 s)."""
    out = []
    for conn in conns:
        beats = [t for t, msg in list(conn.messages) if since < t <= until and msg == '{"hb":1}']
        out += [((b - a) - 1.0) * 1000.0 for a, b in zip(beats, beats[1:])]
    return out


def lateness_stats(values, n_conns):
    return {
        "intervals": len(values),
        "connections": n_conns,
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values) if values else None,
        "min_ms": min(values) if values else None,
    }


def run(bench, loop, result):
    n = env_int("BENCH_SCALE_TRIGGERS", 1000)
    idle_secs = env_float("BENCH_SCALE_IDLE_SECS", 10)
    hb_secs = env_float("BENCH_SCALE_HB_SECS", 10)
    connect_cap = env_float("BENCH_SCALE_CONNECT_CAP_SECS", 45)
    if n != 1000:
        bench.trim("scale", f"{n:,} triggers instead of 1,000 (BENCH_SCALE_TRIGGERS)")
    details = result.details
    rows = result.rows
    hub = Hub(loop).start()
    try:
        from orvanta_triggers import services

        # Triggers, made invisible to listeners until measured.
        t0 = time.monotonic()
        ws = product.workspace("bench-scale")
        triggers = [product.trigger(ws, f"f/bench/scale/{i:04d}", hub.url(f"/t/{i}")) for i in range(n)]
        services.set_workspace_plan(workspace=ws, plan="free")
        log(f"scale: {n:,} triggers created in {time.monotonic() - t0:.1f}s")

        listener, port = bench.start_listener("scale-listener")
        time.sleep(2.0)
        if hub.live_count() or product.connected(port):
            raise BenchError("the listener connected triggers of a free-plan workspace")
        rss0 = rss_bytes(listener.pid)

        started = time.monotonic()
        services.set_workspace_plan(workspace=ws, plan="enterprise")

        def all_connected():
            if not listener.alive():
                raise BenchError(f"listener exited:\n{listener.log_tail()}")
            return hub.live_count() >= n

        try:
            wait_for(all_connected, timeout=connect_cap, what=f"{n} connections", interval=0.02)
            connect_secs = time.monotonic() - started
        except BenchError:
            connect_secs = None
            log(f"scale: only {hub.live_count()}/{n} connected after {connect_cap:g}s")
        time.sleep(2.0)
        rss1 = rss_bytes(listener.pid)
        cpu = cpu_percent(listener.pid, idle_secs)
        live = hub.live_count()
        product_stats = {
            "connect_secs": connect_secs,
            "connected": live,
            "rss_mb": rss1 / MB,
            "rss_no_triggers_mb": rss0 / MB,
            "rss_delta_mb": (rss1 - rss0) / MB,
            "idle_cpu_percent": cpu,
            "metric_connected": product.connected(port),
        }
        log(
            f"scale: product connected {live}/{n} in "
            f"{'(not all)' if connect_secs is None else f'{connect_secs:.2f}'}s, "
            f"RSS {rss1 / MB:.1f} MB (+{(rss1 - rss0) / MB:.1f}), idle CPU {cpu:.2f} %"
        )

        # Heartbeats: one update per trigger, each a configuration change.
        t_update = time.monotonic()
        for trigger in triggers:
            services.update_trigger(trigger=trigger, heartbeat=HEARTBEAT)
        updated = time.monotonic()
        product_stats["heartbeat_update_secs"] = updated - t_update

        def reconnected():
            if not listener.alive():
                raise BenchError(f"listener exited:\n{listener.log_tail()}")
            conns = [c for c in hub.snapshot() if c.closed is None and c.opened > t_update]
            return len(conns) >= n

        try:
            wait_for(
                reconnected, timeout=connect_cap, what="every trigger to reconnect with its heartbeat", interval=0.1
            )
            product_stats["heartbeat_reconnect_secs"] = time.monotonic() - updated
        except BenchError:
            product_stats["heartbeat_reconnect_secs"] = None
        time.sleep(2.5)
        window_start = time.monotonic()
        time.sleep(hb_secs)
        window_end = time.monotonic()
        conns = [c for c in hub.snapshot() if c.opened > t_update]
        late = lateness(conns, window_start, window_end)
        product_stats["heartbeat"] = lateness_stats(late, len(conns))
        product_stats["heartbeat"]["expected_intervals"] = int(n * (hb_secs - 1))
        product_stats["listener"] = product.listener_counters(port)
        details["product"] = product_stats
        log(f"scale: product heartbeat lateness {product_stats['heartbeat']}")
        bench.stop(listener)
        hub.stop()

        # Baseline: bare websocket-client threads, same server.
        base_hub = Hub(loop).start()
        try:
            client = bench.client(
                "scale-baseline",
                ["threads", f"ws://127.0.0.1:{base_hub.port}", str(n)],
                stdout_pipe=True,
                stdin_pipe=True,
            )
            out = read_json_line(client, timeout=connect_cap + 15)
            time.sleep(2.0)
            base_rss = rss_bytes(client.pid)
            base_cpu = cpu_percent(client.pid, idle_secs)
            client.send("hb")
            hb_started = read_json_line(client, timeout=15)["at"]
            time.sleep(2.5)
            window_start = time.monotonic()
            time.sleep(hb_secs)
            window_end = time.monotonic()
            base_late = lateness(base_hub.snapshot(), max(window_start, hb_started), window_end)
            client.send("quit")
            bench.stop(client)
        finally:
            base_hub.shutdown()
        base_stats = {
            "connect_secs": out["connect_secs"],
            "connected": out["connected"],
            "errors": out["errors"],
            "rss_mb": base_rss / MB,
            "rss_before_mb": out["rss0"] / MB,
            "rss_delta_mb": (base_rss - out["rss0"]) / MB,
            "idle_cpu_percent": base_cpu,
            "heartbeat": lateness_stats(base_late, out["connected"]),
        }
        details["baseline"] = base_stats
        log(
            f"scale: baseline threads connected {out['connected']} in {out['connect_secs']:.2f}s, "
            f"RSS {base_rss / MB:.1f} MB (+{base_stats['rss_delta_mb']:.1f}), idle CPU {base_cpu:.2f} %, "
            f"heartbeat {base_stats['heartbeat']}"
        )

        label = "bare websocket-client threads"
        connect_note = "" if connect_secs is not None else f"only {live}/{n} connected within {connect_cap:g}s"
        hb = product_stats["heartbeat"]
        reconnect = product_stats["heartbeat_reconnect_secs"]
        hb_note = (
            f"{hb['intervals']:,} intervals over {hb_secs:g}s on {hb['connections']:,} connections "
            f"(about {hb['expected_intervals']:,} expected); the {n:,} heartbeat updates took "
            f"{product_stats['heartbeat_update_secs']:.1f}s, all reconnected "
            + (f"{reconnect:.2f}s after the last" if reconnect is not None else f"NOT within {connect_cap:g}s")
        )
        rows += [
            Row(
                "scale",
                f"listener RSS, {n:,} triggers",
                "MB",
                f"<= {RSS_TARGET_MB} MB",
                rss1 / MB <= RSS_TARGET_MB,
                rss1 / MB,
                base_rss / MB,
                label,
                higher_is_better=False,
                note=f"absolute RSS; listener with no trigger: {rss0 / MB:.1f} MB",
            ),
            Row(
                "scale",
                f"RSS added by {n:,} connections",
                "MB",
                "",
                None,
                (rss1 - rss0) / MB,
                (base_rss - out["rss0"]) / MB,
                label,
                higher_is_better=False,
            ),
            Row(
                "scale",
                f"idle CPU, {n:,} connected",
                "%",
                f"<= {CPU_TARGET:g} %",
                cpu <= CPU_TARGET,
                cpu,
                base_cpu,
                label,
                higher_is_better=False,
                note=f"% of one core over {idle_secs:g}s",
            ),
            Row(
                "scale",
                f"time to connect all {n:,}",
                "s",
                f"<= {CONNECT_TARGET_S:g} s",
                connect_secs is not None and connect_secs <= CONNECT_TARGET_S,
                connect_secs,
                out["connect_secs"],
                label,
                higher_is_better=False,
                note=connect_note,
            ),
            Row(
                "scale",
                f"heartbeat lateness p99, {n:,} x 1 s",
                "ms",
                f"<= {LATENESS_TARGET_MS:g} ms",
                hb["p99_ms"] is not None and hb["p99_ms"] <= LATENESS_TARGET_MS,
                hb["p99_ms"],
                base_stats["heartbeat"]["p99_ms"],
                label,
                higher_is_better=False,
                note=hb_note,
            ),
        ]
    finally:
        hub.shutdown()
