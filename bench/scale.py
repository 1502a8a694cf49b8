"""scale: N triggers (BENCH_SCALE_TRIGGERS, 10,000 by default) on N connections held by
one listener, beside N bare websocket-client threads, both measured by the same kind
of server (servers.FeedServer, a fresh one for each run, in the bench process).

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

import math
import os
import time

from bench import product
from bench.harness import (
    BenchError,
    Row,
    cpu_percents,
    ensure_room,
    env_float,
    env_int,
    log,
    percentile,
    read_json_line,
    rss_bytes,
    wait_for,
)
from bench.servers import FeedServer, LagProbe

DEFAULT_TRIGGERS = 10_000
CONNECT_TARGET_S = 30.0
RSS_TARGET_MB = 400.0
CPU_TARGET = 5.0
LATENESS_TARGET_MS = 100.0
EDIT_TARGET_S = 2.0
STOP_TARGET_S = 5.0
# The relative targets (within 2x of bare threads, CPU within 3 points) are
# set for 5,000 and 10,000 triggers.
RELATIVE_FROM = 5000
RELATIVE_FACTOR = 2.0
CPU_POINTS = 3.0
HEARTBEAT = {"interval_secs": 1, "message": '{"hb":1}'}
# After everything reconnected with its heartbeat, before the window opens: the
# first beat of each connection comes a second after its connect.
SETTLE_SECS = 2.5
EDIT_CAP_SECS = 10.0
# How long after the edit took effect other connections are watched for a reconnect
# it set off (the listener reconciles every second).
EDIT_WATCH_SECS = 2.0
# Long enough to time a listener that takes several times the target to exit.
STOP_CAP_SECS = 30.0
MB = 1024 * 1024
SELF = os.getpid()


def _wait(predicate, proc, timeout, what, interval=0.05):
    """predicate()'s first truthy value, or None after `timeout`; a BenchError when
    `proc` (if given) exits meanwhile."""

    def check():
        if proc is not None and not proc.alive():
            raise BenchError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
        return predicate()

    try:
        return wait_for(check, timeout=timeout, what=what, interval=interval)
    except BenchError as exc:
        if proc is not None and not proc.alive():
            raise
        log(f"scale: {exc}")
        return None


def _since(at, t):
    return None if at is None else at - t


def _all_open_since(server, t, n, proc, timeout, what):
    """Seconds from `t` until n connections opened after `t` were open, by the
    server's own stamps (the last of them to open), or None after `timeout`."""
    if _wait(lambda: server.open_since(t) >= n, proc, timeout, what, 0.05) is None:
        return None
    return server.latest_open() - t


def heartbeat_stats(server, conns, since, until, n):
    """Heartbeat intervals seen over (since, until] against those expected of n
    triggers, and the lateness of each (inter-arrival minus 1 s, in ms).

    p50_ms and p99_ms count every missing interval as infinitely late, as the
    latency scenario counts a lost result (None: the percentile falls on one): over
    the intervals seen alone (seen_p50_ms, seen_p99_ms), a sender that fell silent
    would look punctual."""
    owed = max(int(until - since) - 1, 0)
    late = []
    seen = {}
    for conn, beats in server.beats(conns, since, until).items():
        gaps = [((b - a) - 1.0) * 1000.0 for a, b in zip(beats, beats[1:])]
        late += gaps
        seen[conn.path] = seen.get(conn.path, 0) + len(gaps)
    expected = n * owed
    counted = sum(min(count, owed) for count in seen.values())
    with_missing = late + [math.inf] * (expected - counted)

    def finite(value):
        return None if value is None or math.isinf(value) else value

    return {
        "expected_intervals": expected,
        "seen_intervals": counted,
        "intervals": len(late),
        "connections_beating": sum(1 for count in seen.values() if count),
        "p50_ms": finite(percentile(with_missing, 50)),
        "p99_ms": finite(percentile(with_missing, 99)),
        "seen_p50_ms": percentile(late, 50),
        "seen_p99_ms": percentile(late, 99),
        "max_ms": max(late) if late else None,
    }


def edit_effects(server, t, old_path, new_path):
    """What changed at the server since the edit at `t`: connections of other paths
    closed or opened, and whether the edited trigger's old connection closed cleanly."""
    conns = server.snapshot()
    old = [c for c in conns if c.path == old_path and c.closed is not None and c.closed > t]
    new = [c.opened for c in conns if c.path == new_path and c.opened > t]
    return {
        "others_closed": sum(1 for c in conns if c.closed is not None and c.closed > t and c.path != old_path),
        "others_opened": sum(1 for c in conns if c.opened > t and c.path != new_path),
        "old_closed_cleanly": bool(old) and all(c.clean for c in old),
        # The old URL and the new are two paths: a double connection shows here only.
        "old_closed_before_new": bool(old) and bool(new) and max(c.closed for c in old) <= min(new),
    }


def stop_effects(server, proc, t):
    """SIGTERM at `t`: seconds until the server saw every connection closed and until
    `proc` exited (None past STOP_CAP_SECS), and how many closed without a close frame."""
    all_closed = _wait(lambda: server.open_count() == 0, None, STOP_CAP_SECS, "every connection closed", 0.02)
    closed_at = server.latest_close(t) if all_closed else None
    exited = _wait(
        lambda: not proc.alive(), None, max(t + STOP_CAP_SECS - time.monotonic(), 0.1), f"{proc.name} to exit", 0.02
    )
    exited_at = time.monotonic() if exited else None
    closed = [c for c in server.snapshot() if c.closed is not None and c.closed >= t]
    return {
        "closed_secs": _since(closed_at, t),
        "exited_secs": _since(exited_at, t),
        "closed": len(closed),
        "unclean": sum(1 for c in closed if not c.clean),
        "still_open": server.open_count(),
        "exit_status": proc.popen.poll(),
    }


def log_problems(proc):
    """Warnings and errors in a process log: (count, first line) of each level."""
    out = {}
    for level in ("WARNING", "ERROR"):
        lines, count = proc.log_lines(f" {level} ", limit=1)
        out[level.lower()] = {"count": count, "first": lines[0] if lines else None}
    return out


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
        stats["connect_secs"] = _all_open_since(
            server, started, n, listener, knobs["connect_cap"], f"{n:,} connections"
        )
        stats["connected"] = server.open_count()
        stats["server_lag_connect_ms"] = probe.take() * 1000
        log(f"scale: product connected {stats['connected']:,}/{n:,} after {time.monotonic() - started:.1f}s")

        # 2. Idle: once the listener has written every trigger's status (its last
        # work after the connects), and after a fixed 2 s to settle.
        written = _wait(
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
        stats["heartbeat_reconnect_secs"] = _all_open_since(
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
        conn = _wait(lambda: server.first_opened(new_path, t_edit), listener, EDIT_CAP_SECS, "the edited trigger")
        stats["edit_secs"] = _since(conn and conn.opened, t_edit)
        time.sleep(EDIT_WATCH_SECS)
        stats["edit"] = edit_effects(server, t_edit, old_path, new_path)
        log(f"scale: product edit in effect after {_fmt_secs(stats['edit_secs'], EDIT_CAP_SECS)}, {stats['edit']}")
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
        conn = _wait(lambda: server.first_opened(new_path, t_edit), client, EDIT_CAP_SECS, "the reopened socket")
        stats["edit_secs"] = _since(conn and conn.opened, t_edit)
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
        f"scale: baseline threads connected {stats['connected']:,} in {_fmt_secs(stats['connect_secs'], 0)}, "
        f"RSS {stats['rss_mb']:.1f} MB (+{stats['rss_added_mb']:.1f}), idle CPU {stats['idle_cpu_percent']:.2f} %, "
        f"heartbeats {stats['heartbeat']}, edit {_fmt_secs(stats['edit_secs'], EDIT_CAP_SECS)}, SIGTERM {stats['stop']}"
    )
    return stats


def _le(value, limit):
    return value is not None and limit is not None and value <= limit


def _both_done(stop):
    """Seconds until every connection was closed and the process had exited."""
    if stop["closed_secs"] is None or stop["exited_secs"] is None:
        return None
    return max(stop["closed_secs"], stop["exited_secs"])


def _lag(prod, base, phase):
    key = f"server_lag_{phase}_ms"
    return f"the server's loop ran up to {prod[key]:.0f} ms late meanwhile (bare run: {base[key]:.0f} ms)"


def _share(hb):
    expected = hb["expected_intervals"]
    return f"{hb['seen_intervals']:,} / {expected:,} ({100.0 * hb['seen_intervals'] / max(expected, 1):.0f} %)"


def _fmt_ms(value):
    return "lost" if value is None else f"{value:.1f} ms"


def _fmt_secs(value, cap):
    return f"{value:.2f} s" if value is not None else f"> {cap:g} s"


def rows(n, knobs, prod, base):
    relative = n >= RELATIVE_FROM
    label = "bare websocket-client threads"
    suffix = f", <= {RELATIVE_FACTOR:g}x bare" if relative else ""
    cap = knobs["connect_cap"]

    def close_enough(measured, baseline):
        return not relative or _le(measured, None if baseline is None else RELATIVE_FACTOR * baseline)

    hb, base_hb = prod["heartbeat"], base["heartbeat"]
    edit, stop, base_stop = prod["edit"], prod["stop"], base["stop"]
    hb_reconnect = prod["heartbeat_reconnect_secs"]
    all_seen = hb["seen_intervals"] >= hb["expected_intervals"] > 0
    edit_only = edit["others_closed"] == 0 and edit["others_opened"] == 0
    stop_clean = stop["unclean"] == 0 and stop["still_open"] == 0 and stop["exit_status"] == 0
    stop_secs = _both_done(stop)
    base_stop_secs = _both_done(base_stop)
    return [
        Row(
            "scale",
            f"time to connect all {n:,}, one listener",
            "s",
            f"<= {CONNECT_TARGET_S:g} s{suffix}",
            _le(prod["connect_secs"], CONNECT_TARGET_S) and close_enough(prod["connect_secs"], base["connect_secs"]),
            prod["connect_secs"],
            base["connect_secs"],
            label,
            higher_is_better=False,
            measured_shown=None if prod["connect_secs"] is not None else f"> {cap:g} s",
            note=("" if prod["connect_secs"] is not None else f"{prod['connected']:,}/{n:,} connected after {cap:g}s; ")
            + f"until the server stamped the last; {_lag(prod, base, 'connect')}",
        ),
        Row(
            "scale",
            f"listener RSS, {n:,} connected",
            "MB",
            f"<= {RSS_TARGET_MB:g} MB",
            prod["rss_mb"] <= RSS_TARGET_MB,
            prod["rss_mb"],
            base["rss_mb"],
            label,
            higher_is_better=False,
            note=f"absolute RSS; the listener holding no trigger: {prod['rss_no_triggers_mb']:.1f} MB, "
            f"the bare client before connecting: {base['rss_before_mb']:.1f} MB",
        ),
        Row(
            "scale",
            f"RSS added by {n:,} connections",
            "MB",
            f"<= {RELATIVE_FACTOR:g}x bare" if relative else "",
            close_enough(prod["rss_added_mb"], base["rss_added_mb"]) if relative else None,
            prod["rss_added_mb"],
            base["rss_added_mb"],
            label,
            higher_is_better=False,
        ),
        Row(
            "scale",
            f"idle CPU, {n:,} connected",
            "%",
            f"<= {CPU_TARGET:g} %" + (f", <= bare + {CPU_POINTS:g} points" if relative else ""),
            prod["idle_cpu_percent"] <= CPU_TARGET
            and (not relative or prod["idle_cpu_percent"] <= base["idle_cpu_percent"] + CPU_POINTS),
            prod["idle_cpu_percent"],
            base["idle_cpu_percent"],
            label,
            higher_is_better=False,
            ratio_shown=f"{prod['idle_cpu_percent'] - base['idle_cpu_percent']:+.2f} points",
            note=f"% of one core over {knobs['idle_secs']:g}s; the listener's statuses were all written "
            f"{_fmt_secs(prod['status_written_secs'], cap)} after the plan flip",
        ),
        Row(
            "scale",
            f"all {n:,} reconnected after a heartbeat added to each",
            "s",
            "",
            None,
            hb_reconnect,
            base["connect_secs"],
            "bare threads connecting all",
            higher_is_better=False,
            measured_shown=None if hb_reconnect is not None else f"> {cap:g} s",
            note=f"one UPDATE of every trigger; {prod['heartbeat_reconnected']:,}/{n:,} reconnected with it",
        ),
        Row(
            "scale",
            f"heartbeat intervals seen, {n:,} x 1 s",
            "",
            "all",
            all_seen,
            hb["seen_intervals"],
            base_hb["seen_intervals"],
            label,
            measured_shown=_share(hb),
            baseline_shown=_share(base_hb),
            ratio_shown="-",
            note=f"over {knobs['hb_secs']:g}s, floor(window) - 1 per trigger; "
            f"{hb['connections_beating']:,} connections beating",
        ),
        Row(
            "scale",
            f"heartbeat lateness p99, {n:,} x 1 s",
            "ms",
            f"<= {LATENESS_TARGET_MS:g} ms{suffix}",
            _le(hb["p99_ms"], LATENESS_TARGET_MS) and close_enough(hb["p99_ms"], base_hb["p99_ms"]),
            hb["p99_ms"],
            base_hb["p99_ms"],
            label,
            higher_is_better=False,
            measured_shown=None if hb["p99_ms"] is not None else "lost",
            baseline_shown=None if base_hb["p99_ms"] is not None else "lost",
            note=f"p50 {_fmt_ms(hb['p50_ms'])}; a missing interval counts as lost; over the {hb['intervals']:,} "
            f"intervals seen: p50 {_fmt_ms(hb['seen_p50_ms'])}, p99 {_fmt_ms(hb['seen_p99_ms'])}, max "
            f"{_fmt_ms(hb['max_ms'])} (bare: p50 {_fmt_ms(base_hb['p50_ms'])}; over the {base_hb['intervals']:,} seen "
            f"p50 {_fmt_ms(base_hb['seen_p50_ms'])}, p99 {_fmt_ms(base_hb['seen_p99_ms'])}); "
            f"{_lag(prod, base, 'heartbeat')}",
        ),
        Row(
            "scale",
            f"one trigger edited among {n:,}: in effect",
            "s",
            f"<= {EDIT_TARGET_S:g} s, only it reconnects",
            _le(prod["edit_secs"], EDIT_TARGET_S)
            and edit_only
            and edit["old_closed_cleanly"]
            and edit["old_closed_before_new"],
            prod["edit_secs"],
            base["edit_secs"],
            "bare: one socket closed and reopened",
            higher_is_better=False,
            measured_shown=None if prod["edit_secs"] is not None else f"> {EDIT_CAP_SECS:g} s",
            note=f"update_trigger(url=...) until the server sees the new URL; in the {EDIT_WATCH_SECS:g}s after, "
            f"{edit['others_closed']} other connection(s) closed and {edit['others_opened']} opened; the old one "
            f"closed {'cleanly' if edit['old_closed_cleanly'] else 'WITHOUT a close frame (or not at all)'}, "
            f"{'before' if edit['old_closed_before_new'] else 'NOT before'} the new one opened",
        ),
        Row(
            "scale",
            f"SIGTERM with {n:,} open: all closed, exited",
            "s",
            f"<= {STOP_TARGET_S:g} s, all clean",
            _le(stop_secs, STOP_TARGET_S) and stop_clean,
            stop_secs,
            base_stop_secs,
            "bare: a close frame on each, exit",
            higher_is_better=False,
            measured_shown=None if stop_secs is not None else f"> {STOP_CAP_SECS:g} s",
            note=f"all closed at the server after {_fmt_secs(stop['closed_secs'], STOP_CAP_SECS)}, exited after "
            f"{_fmt_secs(stop['exited_secs'], STOP_CAP_SECS)} (status {stop['exit_status']}); {stop['unclean']:,} "
            f"of {stop['closed']:,} closed without a close frame, {stop['still_open']:,} still open "
            f"(bare: {base_stop['unclean']:,} unclean, all closed after "
            f"{_fmt_secs(base_stop['closed_secs'], STOP_CAP_SECS)}); {_lag(prod, base, 'stop')}",
        ),
        Row(
            "scale",
            "triggers ever connected twice at once",
            "",
            "none",
            not prod["doubled"],
            sum(prod["doubled"].values()),
            sum(base["doubled"].values()),
            label,
            higher_is_better=False,
            note="by phase: "
            + (", ".join(f"{k} {v:,}" for k, v in prod["doubled"].items()) or "none")
            + " (a trigger's old connection still open at the server when its new one opened)",
        ),
        Row(
            "scale",
            f"server side: RSS with {n:,} connections",
            "MB",
            "",
            None,
            prod["server_rss_mb"],
            base["server_rss_mb"],
            "same server, bare threads' run",
            higher_is_better=False,
            ratio_shown="-",
            note=f"the bench process, which holds the server ends (servers.FeedServer); the product's "
            f"connections added {prod['server_rss_added_mb']:.1f} MB to it (the bare run's reuse memory the "
            f"product run freed)",
        ),
        Row(
            "scale",
            f"server side: CPU, {n:,} x 1 s heartbeats",
            "%",
            "",
            None,
            prod["server_heartbeat_cpu_percent"],
            base["server_heartbeat_cpu_percent"],
            "same server, bare threads' run",
            higher_is_better=False,
            ratio_shown="-",
            note=f"% of one core, the bench process; idle: {prod['server_idle_cpu_percent']:.2f} % "
            f"(bare threads' run: {base['server_idle_cpu_percent']:.2f} %); the listener used "
            f"{prod['heartbeat_cpu_percent']:.1f} % meanwhile, the bare client {base['heartbeat_cpu_percent']:.1f} %",
        ),
    ]


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
