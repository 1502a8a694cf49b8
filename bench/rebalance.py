"""rebalance: listeners coming and going. BENCH_REBALANCE_TRIGGERS triggers (9,000 by
default) on one server (servers.FeedServer, in the bench process), held by three
listeners; a fourth starts, then one of the first three is SIGKILLed. All four run with
ORVANTA_LEASE_TTL_SECS=BENCH_REBALANCE_LEASE_TTL_SECS (15 s, the product's default).

- Start. The triggers are created in bulk (bench set-up: product.bulk_triggers) in a
  `free` workspace, the three listeners start, the workspace goes back to
  `enterprise`: until the server holds every trigger's connection and each listener
  holds its third within +-10 %.
- Join. A fourth listener starts: time from its start until every trigger is
  connected and each of the four holds a quarter within +-10 % (listeners' own
  `connected` gauges); then, once each holds exactly its rendezvous share (or at
  BENCH_REBALANCE_CAP_SECS), the triggers that got a new connection since the start
  of the fourth, against those whose rendezvous owner changed (the ideal: a quarter
  of them, and no other).
- Kill. The first listener's process group is SIGKILLed: time until every trigger it
  held (the connections the server saw drop) has a new connection.
- Throughout, the server counts the open connections of each trigger's path: a
  trigger with two at once (two listeners holding it) is a double connection.

Its baselines are the ideal figures rather than a same-run measurement: the share of
triggers whose rendezvous owner changes, and the lease TTL + 2 s bound.
"""

import collections
import time

from bench import product
from bench.harness import BenchError, Row, ensure_room, env_float, env_int, log, wait_for
from bench.servers import FeedServer

DEFAULT_TRIGGERS = 9000
SPREAD_TARGET_S = 60.0
SPREAD_TOLERANCE = 0.10
MOVED_TARGET = 0.30
FIRST = ("rebalance-L1", "rebalance-L2", "rebalance-L3")
JOINER = "rebalance-L4"
# How long the SIGKILLed listener's sockets may take to be seen closed by the server
# (the kernel closes them as the process dies).
DROP_CAP_SECS = 10.0


def counts(ports):
    """{listener: its `connected` gauge}, None for one whose metrics do not answer."""
    out = {}
    for name, port in ports.items():
        value = product.connected(port)
        out[name] = None if value is None else int(value)
    return out


def even(held, total, tolerance=SPREAD_TOLERANCE):
    """Whether every listener's count is within `tolerance` of an even share."""
    share = total / len(held)
    return all(c is not None and abs(c - share) <= tolerance * share for c in held.values())


def run(bench, loop, result):
    from listener.leases import rendezvous_owner
    from orvanta_triggers import services

    k = env_int("BENCH_REBALANCE_TRIGGERS", DEFAULT_TRIGGERS)
    ttl = env_float("BENCH_REBALANCE_LEASE_TTL_SECS", 15)
    cap = env_float("BENCH_REBALANCE_CAP_SECS", 120)
    if k != DEFAULT_TRIGGERS:
        bench.trim("rebalance", f"{k:,} triggers instead of {DEFAULT_TRIGGERS:,} (BENCH_REBALANCE_TRIGGERS)")
    ensure_room(k, f"rebalance with {k:,} triggers")
    details = result.details
    details.update(triggers=k, lease_ttl_secs=ttl, cap_secs=cap)
    env = {"ORVANTA_LEASE_TTL_SECS": f"{ttl:g}"}
    server = FeedServer(loop).start()
    try:
        t0 = time.monotonic()
        ws = product.workspace("bench-rebalance")
        services.set_workspace_plan(workspace=ws, plan="free")
        ids = product.bulk_triggers(ws, [(f"f/bench/rebalance/{i:05d}", server.url(f"/t/{i}")) for i in range(k)])
        paths = {tid: f"/t/{i}" for i, tid in enumerate(ids)}
        log(f"rebalance: {k:,} triggers created in {time.monotonic() - t0:.1f}s")

        procs, ports = {}, {}
        for name in FIRST:
            procs[name], ports[name] = bench.start_listener(name, env=env)

        def alive(names):
            for name in names:
                if not procs[name].alive():
                    raise BenchError(f"{name} exited ({procs[name].popen.returncode}):\n{procs[name].log_tail()}")

        # Start.
        started = time.monotonic()
        services.set_workspace_plan(workspace=ws, plan="enterprise")

        def spread_over(names):
            alive(names)
            held = counts({n: ports[n] for n in names})
            return (
                held if server.open_count() == k and sum(c or 0 for c in held.values()) == k and even(held, k) else None
            )

        held = wait_for(lambda: spread_over(FIRST), timeout=cap, what=f"{k:,} connections over three listeners")
        details["start"] = {"secs": time.monotonic() - started, "held": held}
        log(f"rebalance: {k:,} connected over three listeners in {details['start']['secs']:.1f}s: {held}")

        # Join.
        four = (*FIRST, JOINER)
        owner3 = {tid: rendezvous_owner(tid, sorted(FIRST)) for tid in ids}
        owner4 = {tid: rendezvous_owner(tid, sorted(four)) for tid in ids}
        share4 = collections.Counter(owner4.values())
        should_move = {paths[tid] for tid in ids if owner3[tid] != owner4[tid]}
        t_join = time.monotonic()
        procs[JOINER], ports[JOINER] = bench.start_listener(JOINER, env=env)
        up_secs = time.monotonic() - t_join
        spread_at = None
        settled_at = None
        deadline = t_join + cap
        while time.monotonic() < deadline:
            alive(four)
            held = counts(ports)
            complete = server.open_count() == k and sum(c or 0 for c in held.values()) == k
            if spread_at is None and complete and even(held, k):
                spread_at = time.monotonic()
            if complete and all(held[name] == share4[name] for name in four):
                settled_at = time.monotonic()
                break
            time.sleep(0.1)
        conns = server.snapshot()
        reconnects = collections.Counter(c.path for c in conns if c.opened > t_join)
        moved = set(reconnects)
        join = {
            "joiner_metrics_up_secs": up_secs,
            "spread_secs": None if spread_at is None else spread_at - t_join,
            "settled_secs": None if settled_at is None else settled_at - t_join,
            "held": held,
            "rendezvous_shares": dict(share4),
            "moved": len(moved),
            "should_move": len(should_move),
            "moved_but_owner_unchanged": len(moved - should_move),
            "owner_changed_not_moved": len(should_move - moved),
            "reconnected_more_than_once": sum(1 for n in reconnects.values() if n > 1),
            "open": server.open_count(),
        }
        details["join"] = join
        log(f"rebalance: join {join}")

        # Kill.
        victim = FIRST[0]
        victim_held = counts({victim: ports[victim]})[victim] or 0
        t_kill = time.monotonic()
        procs[victim].sigkill()
        survivors = [name for name in four if name != victim]

        def dropped():
            return [c.path for c in server.snapshot() if c.closed is not None and c.closed >= t_kill]

        wait_for(
            lambda: len(dropped()) >= victim_held,
            timeout=DROP_CAP_SECS,
            what=f"the server to see {victim}'s {victim_held:,} connections drop",
        )
        lost = set(dropped())
        taken = {}
        deadline = t_kill + ttl + cap
        while time.monotonic() < deadline and len(taken) < len(lost):
            alive(survivors)
            reopened = server.opened_after(t_kill)
            taken = {path: reopened[path] - t_kill for path in lost if path in reopened}
            time.sleep(0.1)
        takeover_secs = max(taken.values()) if taken and len(taken) == len(lost) else None
        kill = {
            "victim_held": victim_held,
            "dropped": len(lost),
            "taken_over": len(taken),
            "slowest_secs": takeover_secs,
            "median_secs": sorted(taken.values())[len(taken) // 2] if taken else None,
            "held_after": counts({n: ports[n] for n in survivors}),
            "open": server.open_count(),
        }
        details["kill"] = kill
        log(f"rebalance: kill {kill}")

        doubled = server.doubled_by_phase({"start": started, "join": t_join, "kill": t_kill})
        details["doubled"] = doubled
        details["doubled_first"] = {path: at - t0 for path, at in list(server.doubled_paths().items())[:20]}
        details["listener_logs"] = {
            name: procs[name].log_lines(" ERROR ", limit=2) + procs[name].log_lines(" WARNING ", limit=2)
            for name in four
        }
    finally:
        server.stop()

    per_third = k // 3
    spread_secs = join["spread_secs"]
    ideal = len(should_move) / k
    result.rows += [
        Row(
            "rebalance",
            f"4th listener joins 3 x {per_third:,}: spread within +-10 % of even",
            "s",
            f"<= {SPREAD_TARGET_S:g} s",
            spread_secs is not None and spread_secs <= SPREAD_TARGET_S,
            spread_secs,
            measured_shown=None if spread_secs is not None else f"> {cap:g} s",
            note=f"from the 4th listener's start (its metrics answered after {up_secs:.1f}s); each held its exact "
            f"rendezvous share after "
            + (f"{join['settled_secs']:.1f}s" if join["settled_secs"] is not None else f"> {cap:g}s")
            + f"; held at the end: {', '.join(f'{n[-2:]} {c}' for n, c in join['held'].items())}; "
            f"the first {k:,} connected over three listeners in {details['start']['secs']:.1f}s",
        ),
        Row(
            "rebalance",
            "triggers moved by the join",
            "%",
            f"<= {MOVED_TARGET * 100:g} %",
            join["moved"] / k <= MOVED_TARGET,
            100.0 * join["moved"] / k,
            100.0 * ideal,
            "rendezvous owner changed",
            higher_is_better=False,
            note=f"{join['moved']:,} of {k:,} got a new connection; {join['moved_but_owner_unchanged']:,} of them "
            f"kept their rendezvous owner, {join['owner_changed_not_moved']:,} whose owner changed did not move, "
            f"{join['reconnected_more_than_once']:,} reconnected more than once",
        ),
        Row(
            "rebalance",
            "triggers ever connected twice at once",
            "",
            "none",
            not doubled,
            sum(doubled.values()),
            note="over the whole scenario; by phase: "
            + (", ".join(f"{name} {count:,}" for name, count in doubled.items()) or "none"),
        ),
        Row(
            "rebalance",
            "a listener SIGKILLed among 4: its triggers reconnected elsewhere (slowest)",
            "s",
            f"<= TTL + 2 = {ttl + 2:g} s",
            takeover_secs is not None and takeover_secs <= ttl + 2,
            takeover_secs,
            ttl + 2,
            "lease TTL + 2 s bound",
            higher_is_better=False,
            measured_shown=None if takeover_secs is not None else f"> {ttl + cap:g} s",
            note=f"ORVANTA_LEASE_TTL_SECS={ttl:g}; {kill['taken_over']:,} of the {kill['dropped']:,} connections "
            f"it held reconnected (median {kill['median_secs']:.2f} s)"
            if kill["median_secs"] is not None
            else f"ORVANTA_LEASE_TTL_SECS={ttl:g}; none of its {kill['dropped']:,} connections reconnected",
        ),
    ]
