"""scale: N triggers (BENCH_SCALE_TRIGGERS, 10,000 by default) on N connections held by
one listener, beside N bare websocket-client threads, both measured by the same kind
of server (feedserver.FeedServer, a fresh one for each run, in the bench process).

Product run, one phase after the other:

1. Connect. The triggers are created in bulk (bench set-up: product.bulk_triggers) in
   a workspace on the `free` plan, which listeners ignore; the listener starts and is
   measured holding nothing; then the workspace goes back to `enterprise` in one call:
   time to connect all, from that call until the server holds N connections.
2. Idle, once every trigger's status reads `connected` in the database (the
   listener's last work after connecting): listener RSS (/proc), and its CPU over
   BENCH_SCALE_IDLE_SECS, by default as long as the default ping interval
   (ORVANTA_PING_INTERVAL_SECS, 20 s), so every connection's protocol ping falls in it.
3. Heartbeats. One UPDATE gives every trigger a 1 s heartbeat and bumps edited_at
   (product.bulk_update_triggers): time until all have reconnected with it; then,
   after SETTLE_SECS, over BENCH_SCALE_HB_SECS, the heartbeat intervals the server saw
   against those expected (a 1 s heartbeat lands at least floor(window) times in the
   window: floor(window) - 1 intervals per trigger) and the lateness of each interval
   (inter-arrival minus 1 s).
4. One edit. update_trigger(url=<another path>) of one trigger among N: time until the
   server sees that trigger's connection on the new URL; then, over EDIT_WATCH_SECS,
   no other connection may have closed or opened.
5. SIGTERM. Time until the server saw every connection closed, and until the
   listener exited; a connection that ended without a close frame from the listener
   was not closed cleanly.

Baseline: `python -m bench.clients threads`, a thread per connection doing the same:
connect N, idle, then a heartbeat thread per connection, one socket closed and opened
again on a new URL, and on SIGTERM a close frame on every socket, then exit.

The server side's own cost (the bench process, which holds the server ends) is
measured in the same windows: RSS added by the N connections, CPU while they idle and
while the heartbeats arrive.
"""

import os
import time

from bench import product
from bench.feedserver import FeedServer
from bench.harness import BenchError, env_float, env_int, log
from bench.processes import read_json_line
from bench.readers import cpu_percents, ensure_room, rss_bytes
from bench.scalerows import fmt_secs, rows
from bench.scalestats import (
    EDIT_CAP_SECS,
    EDIT_WATCH_SECS,
    MB,
    all_open_since,
    edit_effects,
    elapsed_since,
    heartbeat_stats,
    log_problems,
    stop_effects,
    wait_or_none,
)
from bench.servers import LagProbe

DEFAULT_TRIGGERS = 10_000
HEARTBEAT = {"interval_secs": 1, "message": '{"hb":1}'}
# After everything reconnected with its heartbeat, before the window opens: the
# first beat of each connection comes a second after its connect.
SETTLE_SECS = 2.5
SELF = os.getpid()


def run_product(bench, loop, n, knobs):
    from orvanta_triggers import services
    from orvanta_triggers.models import WebSocketTrigger

    stats = {}
    server = FeedServer(loop).start()
    probe = LagProbe(loop).start()
    try:
        t0 = time.monotonic()
        ws = product.workspace("bench-scale")
        services.set_workspace_plan(workspace=ws, plan="free")
        ids = product.bulk_triggers(ws, [(f"f/bench/scale/{i:05d}", server.url(f"/t/{i}")) for i in range(n)])
        log(f"scale: {n:,} triggers created in {time.monotonic() - t0:.1f}s")

        # 1. Connect.
        listener, port = bench.start_listener("scale-listener")
        # A fixed window: a listener that wrongly took free-plan triggers would have
        # connected some within its first reconcile ticks.
        time.sleep(2.0)
        if server.open_count() or product.connected(port):
            raise BenchError("the listener connected triggers of a free-plan workspace")
        rss0, server_rss0 = rss_bytes(listener.pid), rss_bytes(SELF)
        probe.take()
        started = time.monotonic()
        services.set_workspace_plan(workspace=ws, plan="enterprise")
        stats["connect_secs"] = all_open_since(server, started, n, listener, knobs["connect_cap"], f"{n:,} connections")
        stats["connected"] = server.open_count()
        stats["server_lag_connect_ms"] = probe.take() * 1000
        log(f"scale: product connected {stats['connected']:,}/{n:,} after {time.monotonic() - started:.1f}s")

        # 2. Idle: once the listener has written every trigger's status (its last
        # work after the connects), and after a fixed 2 s to settle.
        written = wait_or_none(
            lambda: WebSocketTrigger.objects.filter(workspace=ws, status="connected").count() >= n,
            listener,
            knobs["connect_cap"],
            "every trigger's status `connected` in the database",
            0.5,
        )
        stats["status_written_secs"] = time.monotonic() - started if written else None
        time.sleep(2.0)
        rss1, server_rss1 = rss_bytes(listener.pid), rss_bytes(SELF)
        cpu, server_cpu = cpu_percents([listener.pid, SELF], knobs["idle_secs"])
        stats.update(
            rss_mb=rss1 / MB,
            rss_no_triggers_mb=rss0 / MB,
            rss_added_mb=(rss1 - rss0) / MB,
            idle_cpu_percent=cpu,
            metric_connected=product.connected(port),
            server_rss_mb=server_rss1 / MB,
            server_rss_added_mb=(server_rss1 - server_rss0) / MB,
            server_idle_cpu_percent=server_cpu,
        )
        log(f"scale: product RSS {rss1 / MB:.1f} MB (+{(rss1 - rss0) / MB:.1f}), idle CPU {cpu:.2f} %")

        # 3. Heartbeats.
        t_update = time.monotonic()
        product.bulk_update_triggers(ws, heartbeat=HEARTBEAT)
        stats["heartbeat_reconnect_secs"] = all_open_since(
            server, t_update, n, listener, knobs["connect_cap"], "every trigger to reconnect with its heartbeat"
        )
        stats["heartbeat_reconnected"] = server.open_since(t_update)
        log(f"scale: product {stats['heartbeat_reconnected']:,}/{n:,} reconnected with a heartbeat")
        time.sleep(SETTLE_SECS)
        probe.take()
        window_start = time.monotonic()
        hb_cpu, server_hb_cpu = cpu_percents([listener.pid, SELF], knobs["hb_secs"])
        window_end = time.monotonic()
        stats["server_lag_heartbeat_ms"] = probe.take() * 1000
        conns = [c for c in server.snapshot() if c.opened > t_update]
        stats["heartbeat"] = heartbeat_stats(server, conns, window_start, window_end, n)
        stats["heartbeat_cpu_percent"] = hb_cpu
        stats["server_heartbeat_cpu_percent"] = server_hb_cpu
        log(f"scale: product heartbeats {stats['heartbeat']}")

        # 4. One edit among N.
        edited = n // 2
        old_path, new_path = f"/t/{edited}", f"/t/{edited}/edited"
        trigger = WebSocketTrigger.objects.get(pk=ids[edited])
        t_edit = time.monotonic()
        services.update_trigger(trigger=trigger, url=server.url(new_path))
        conn = wait_or_none(
            lambda: server.first_opened(new_path, t_edit), listener, EDIT_CAP_SECS, "the edited trigger"
        )
        stats["edit_secs"] = elapsed_since(conn and conn.opened, t_edit)
        time.sleep(EDIT_WATCH_SECS)
        stats["edit"] = edit_effects(server, t_edit, old_path, new_path)
        log(f"scale: product edit in effect after {fmt_secs(stats['edit_secs'], EDIT_CAP_SECS)}, {stats['edit']}")
        stats["listener_counters"] = product.listener_counters(port)

        # 5. SIGTERM.
        probe.take()
        t_term = time.monotonic()
        listener.terminate()
        stats["stop"] = stop_effects(server, listener, t_term)
        stats["server_lag_stop_ms"] = probe.take() * 1000
        log(f"scale: product SIGTERM {stats['stop']}")
        phases = {"connect": started, "heartbeat update": t_update, "edit": t_edit, "SIGTERM": t_term}
        stats["doubled"] = server.doubled_by_phase(phases)
        bench.stop(listener)
        stats["listener_log"] = log_problems(listener)
    finally:
        probe.stop()
        server.stop()
    return stats


def run_baseline(bench, loop, n, knobs):
    stats = {}
    server = FeedServer(loop).start()
    probe = LagProbe(loop).start()
    try:
        server_rss0 = rss_bytes(SELF)
        client = bench.client(
            "scale-baseline", ["threads", f"ws://127.0.0.1:{server.port}", str(n)], stdout_pipe=True, stdin_pipe=True
        )
        out = read_json_line(client, timeout=knobs["connect_cap"] + 15)
        # Timed like the product's: from the start (the client's stamp) until the
        # server stamped the last connection.
        connect_secs = server.latest_open() - out["first"] if out["connected"] == n else None
        stats["server_lag_connect_ms"] = probe.take() * 1000
        time.sleep(2.0)
        rss1, server_rss1 = rss_bytes(client.pid), rss_bytes(SELF)
        cpu, server_cpu = cpu_percents([client.pid, SELF], knobs["idle_secs"])
        stats.update(
            connect_secs=connect_secs,
            client_connect_secs=out["connect_secs"],
            connected=out["connected"],
            errors=out["errors"],
            rss_mb=rss1 / MB,
            rss_before_mb=out["rss0"] / MB,
            rss_added_mb=(rss1 - out["rss0"]) / MB,
            idle_cpu_percent=cpu,
            server_rss_mb=server_rss1 / MB,
            server_rss_added_mb=(server_rss1 - server_rss0) / MB,
            server_idle_cpu_percent=server_cpu,
        )

        client.send("hb")
        # Starting N threads takes a while on a loaded machine: as long as connecting.
        hb_started = read_json_line(client, timeout=knobs["connect_cap"])["at"]
        time.sleep(SETTLE_SECS)
        probe.take()
        window_start = time.monotonic()
        hb_cpu, server_hb_cpu = cpu_percents([client.pid, SELF], knobs["hb_secs"])
        window_end = time.monotonic()
        stats["server_lag_heartbeat_ms"] = probe.take() * 1000
        stats["heartbeat"] = heartbeat_stats(server, server.snapshot(), max(window_start, hb_started), window_end, n)
        stats["heartbeat_cpu_percent"] = hb_cpu
        stats["server_heartbeat_cpu_percent"] = server_hb_cpu
        log(f"scale: baseline heartbeats {stats['heartbeat']}")

        edited = n // 2
        old_path, new_path = f"/t/{edited}", f"/t/{edited}/edited"
        t_edit = time.monotonic()
        client.send(f"reconnect {edited} {server.url(new_path)}")
        conn = wait_or_none(lambda: server.first_opened(new_path, t_edit), client, EDIT_CAP_SECS, "the reopened socket")
        stats["edit_secs"] = elapsed_since(conn and conn.opened, t_edit)
        stats["edit"] = edit_effects(server, t_edit, old_path, new_path)

        probe.take()
        t_term = time.monotonic()
        client.terminate()
        stats["stop"] = stop_effects(server, client, t_term)
        stats["server_lag_stop_ms"] = probe.take() * 1000
        stats["doubled"] = server.doubled_by_phase({"connect": out["first"]})
        bench.stop(client)
    finally:
        probe.stop()
        server.stop()
    log(
        f"scale: baseline threads connected {stats['connected']:,} in {fmt_secs(stats['connect_secs'], 0)}, "
        f"RSS {stats['rss_mb']:.1f} MB (+{stats['rss_added_mb']:.1f}), idle CPU {stats['idle_cpu_percent']:.2f} %, "
        f"heartbeats {stats['heartbeat']}, edit {fmt_secs(stats['edit_secs'], EDIT_CAP_SECS)}, SIGTERM {stats['stop']}"
    )
    return stats


def run(bench, loop, result):
    n = env_int("BENCH_SCALE_TRIGGERS", DEFAULT_TRIGGERS)
    knobs = {
        "idle_secs": env_float("BENCH_SCALE_IDLE_SECS", 20),
        "hb_secs": env_float("BENCH_SCALE_HB_SECS", 10),
        "connect_cap": env_float("BENCH_SCALE_CONNECT_CAP_SECS", 90),
    }
    if n != DEFAULT_TRIGGERS:
        bench.trim("scale", f"{n:,} triggers instead of {DEFAULT_TRIGGERS:,} (BENCH_SCALE_TRIGGERS)")
    ensure_room(n, f"scale with {n:,} triggers")
    result.details["triggers"] = n
    result.details["knobs"] = knobs
    prod = run_product(bench, loop, n, knobs)
    result.details["product"] = prod
    base = run_baseline(bench, loop, n, knobs)
    result.details["baseline"] = base
    result.rows += rows(n, knobs, prod, base)
