"""rebalance: listeners coming and going. BENCH_REBALANCE_TRIGGERS triggers (9,000 by
default) on one server (feedserver.FeedServer, in the bench process), held by three
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

A phase that does not settle within BENCH_REBALANCE_CAP_SECS ends the scenario with
the rows measured so far (the table says where it stopped), the double connections
and each listener's lost leases among them: what follows would measure the mess, not
the rebalance.

Its baselines are the ideal figures rather than a same-run measurement: the share of
triggers whose rendezvous owner changes, and the lease TTL + 2 s bound.
"""

import collections
import statistics
import time

from bench import product
from bench.feedserver import FeedServer
from bench.harness import BenchError, Row, env_float, env_int, log, wait_for
from bench.readers import ensure_room

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


def lost_leases(procs):
    """{listener: how many times its log says a lease was lost to another listener}."""
    return {name[-2:]: proc.log_lines("lease lost to another listener", limit=0)[1] for name, proc in procs.items()}


def doubled_row(doubled, procs):
    return Row(
        "rebalance",
        "triggers ever connected twice at once",
        "",
        "none",
        not doubled,
        sum(doubled.values()),
        note="by phase: "
        + (", ".join(f"{name} {count:,}" for name, count in doubled.items()) or "none")
        + "; leases lost to another listener, from their logs: "
        + ", ".join(f"{name} {count:,}" for name, count in lost_leases(procs).items()),
    )


def _shown(held):
    return ", ".join(f"{name[-2:]} {count}" for name, count in held.items())


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
    rows = result.rows
    procs, ports = {}, {}
    phases = {}
    server = FeedServer(loop).start()

    def alive(names):
        for name in names:
            if not procs[name].alive():
                raise BenchError(f"{name} exited ({procs[name].popen.returncode}):\n{procs[name].log_tail()}")

    def until(predicate, names, what, timeout=cap):
        """wait_for, None at the deadline; a BenchError when a listener exits."""
        try:
            return wait_for(predicate, timeout=timeout, what=what, interval=0.1)
        except BenchError:
            alive(names)
            log(f"rebalance: {what}: not within {timeout:g}s")
            return None

    def give_up(phase):
        doubled = server.doubled_by_phase(phases)
        details["doubled"] = doubled
        rows.append(doubled_row(doubled, procs))
        raise BenchError(f"the {phase} did not settle within {cap:g}s (BENCH_REBALANCE_CAP_SECS): see the rows")

    try:
        t0 = time.monotonic()
        ws = product.workspace("bench-rebalance")
        services.set_workspace_plan(workspace=ws, plan="free")
        ids = product.bulk_triggers(ws, [(f"f/bench/rebalance/{i:05d}", server.url(f"/t/{i}")) for i in range(k)])
        paths = {tid: f"/t/{i}" for i, tid in enumerate(ids)}
        log(f"rebalance: {k:,} triggers created in {time.monotonic() - t0:.1f}s")
        for name in FIRST:
            procs[name], ports[name] = bench.start_listener(name, env=env)

        # Start.
        started = phases["start"] = time.monotonic()
        services.set_workspace_plan(workspace=ws, plan="enterprise")
        state = {}

        def spread_over(names):
            alive(names)
            state["held"] = counts({n: ports[n] for n in names})
            state["open"] = server.open_count()
            held = state["held"]
            return state["open"] == k and sum(c or 0 for c in held.values()) == k and even(held, k)

        start_secs = None
        if until(lambda: spread_over(FIRST), FIRST, f"{k:,} connections over three listeners"):
            start_secs = time.monotonic() - started
        details["start"] = {"secs": start_secs, **state}
        log(f"rebalance: start {details['start']}")
        rows.append(
            Row(
                "rebalance",
                f"{k:,} triggers connected over 3 listeners, each +-10 % of a third",
                "s",
                "",
                None,
                start_secs,
                measured_shown=None if start_secs is not None else f"> {cap:g} s",
                note=f"from the plan flip; at the end the server held {state['open']:,} open connections, "
                f"the listeners' connected gauges: {_shown(state['held'])}",
            )
        )
        if start_secs is None:
            give_up("start")

        # Join.
        four = (*FIRST, JOINER)
        owner3 = {tid: rendezvous_owner(tid, sorted(FIRST)) for tid in ids}
        owner4 = {tid: rendezvous_owner(tid, sorted(four)) for tid in ids}
        share4 = collections.Counter(owner4.values())
        should_move = {paths[tid] for tid in ids if owner3[tid] != owner4[tid]}
        t_join = phases["join"] = time.monotonic()
        procs[JOINER], ports[JOINER] = bench.start_listener(JOINER, env=env)
        up_secs = time.monotonic() - t_join
        marks = {}

        def settled():
            spread_over(four)
            held = state["held"]
            complete = state["open"] == k and sum(c or 0 for c in held.values()) == k
            if "spread" not in marks and complete and even(held, k):
                marks["spread"] = time.monotonic()
            return complete and all(held[name] == share4[name] for name in four)

        settled_secs = None
        if until(settled, four, "each listener to hold its rendezvous share"):
            settled_secs = time.monotonic() - t_join
        spread_secs = marks["spread"] - t_join if "spread" in marks else None
        reconnects = collections.Counter(c.path for c in server.snapshot() if c.opened > t_join)
        moved = set(reconnects)
        join = {
            "joiner_metrics_up_secs": up_secs,
            "spread_secs": spread_secs,
            "settled_secs": settled_secs,
            "rendezvous_shares": dict(share4),
            "moved": len(moved),
            "should_move": len(should_move),
            "moved_but_owner_unchanged": len(moved - should_move),
            "owner_changed_not_moved": len(should_move - moved),
            "reconnected_more_than_once": sum(1 for n in reconnects.values() if n > 1),
            **state,
        }
        details["join"] = join
        log(f"rebalance: join {join}")
        rows += [
            Row(
                "rebalance",
                f"4th listener joins 3 x {k // 3:,}: spread within +-10 % of even",
                "s",
                f"<= {SPREAD_TARGET_S:g} s",
                spread_secs is not None and spread_secs <= SPREAD_TARGET_S,
                spread_secs,
                measured_shown=None if spread_secs is not None else f"> {cap:g} s",
                note=f"from the 4th listener's start (its metrics answered after {up_secs:.1f}s); each held its "
                f"exact rendezvous share after "
                + (f"{settled_secs:.1f}s" if settled_secs is not None else f"> {cap:g}s")
                + f"; connected gauges at the end: {_shown(state['held'])}",
            ),
            Row(
                "rebalance",
                "triggers moved by the join",
                "%",
                f"<= {MOVED_TARGET * 100:g} %",
                len(moved) / k <= MOVED_TARGET,
                100.0 * len(moved) / k,
                100.0 * len(should_move) / k,
                "rendezvous owner changed",
                higher_is_better=False,
                note=f"{len(moved):,} of {k:,} got a new connection; {join['moved_but_owner_unchanged']:,} of them "
                f"kept their rendezvous owner, {join['owner_changed_not_moved']:,} whose owner changed did not "
                f"move, {join['reconnected_more_than_once']:,} reconnected more than once",
            ),
        ]
        if settled_secs is None:
            give_up("join")

        # Kill.
        victim = FIRST[0]
        victim_held = state["held"][victim] or 0
        t_kill = phases["kill"] = time.monotonic()
        procs[victim].kill_group()
        survivors = [name for name in four if name != victim]

        def dropped():
            return {c.path for c in server.snapshot() if c.closed is not None and c.closed >= t_kill}

        wait_for(
            lambda: len(dropped()) >= victim_held,
            timeout=DROP_CAP_SECS,
            what=f"the server to see {victim}'s {victim_held:,} connections drop",
        )
        lost = dropped()
        taken = {}

        def all_taken():
            alive(survivors)
            reopened = server.opened_after(t_kill)
            taken.update({path: reopened[path] - t_kill for path in lost if path in reopened})
            return len(taken) == len(lost)

        until(all_taken, survivors, f"{victim}'s triggers to reconnect elsewhere", timeout=ttl + cap)
        takeover_secs = max(taken.values()) if taken and len(taken) == len(lost) else None
        median_secs = statistics.median(taken.values()) if taken else None
        details["kill"] = {
            "victim_held": victim_held,
            "dropped": len(lost),
            "taken_over": len(taken),
            "slowest_secs": takeover_secs,
            "median_secs": median_secs,
            "held_after": counts({n: ports[n] for n in survivors}),
            "open": server.open_count(),
        }
        log(f"rebalance: kill {details['kill']}")
        doubled = server.doubled_by_phase(phases)
        details["doubled"] = doubled
        details["doubled_first"] = {path: at - t0 for path, at in list(server.doubled_paths().items())[:20]}
        rows += [
            doubled_row(doubled, procs),
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
                note=f"ORVANTA_LEASE_TTL_SECS={ttl:g}; {len(taken):,} of the {len(lost):,} connections it held "
                f"reconnected" + (f" (median {median_secs:.2f} s)" if median_secs is not None else ""),
            ),
        ]
    finally:
        server.stop()
