"""The end of a chaos run: every message the feeds wrote accounted for against the Job
rows and the chaos runnable's execution log, the connections and the process logs
read, the assertions checked (into Chaos.failures) and the summary printed."""

from collections import Counter, defaultdict
from pathlib import Path

from scripts.chaos.console import T0, clock
from scripts.chaos.evidence import ExecLog, broker_trace, grep
from scripts.chaos.feeds import digest
from scripts.chaos.knobs import NEAR_KILL_SECS, POISON_FEEDS, POISON_KINDS, SEED, TAKEOVER_LIMIT_SECS
from scripts.chaos_runnables.chaos_record import message_key
from tests.support.percentiles import percentile

# The moments of the timeline the summary lists, in order (Chaos.events).
TIMELINE_EVENTS = (
    "connected",
    "redis_down",
    "redis_up",
    "pg_restart",
    "pg_restarted",
    "pg_down",
    "pg_stopped",
    "pg_up",
    "worker_child_killed",
    "L1_killed",
    "sending_stopped",
    "drained",
)


def report_run(run):
    """Check and print what became of everything the Chaos `run` did."""
    messages = Messages(run)
    executions = Executions(run, messages)
    closes = ConnectionCloses(run, messages.conns)
    logs = LogEvidence(run.procs.logs)
    check_jobs(run, messages, executions)
    check_l1(run, messages, closes)
    check_connections(run, closes)
    check_executions(run, executions)
    lost_trace = trace_lost_messages(run, messages)
    print_summary(run, messages, executions, closes, logs, lost_trace)


def job_rows(workspace):
    """[(id, key, digest of msg, digest of result, status, trigger path, finished_at)] of every job."""
    from orvanta_triggers.models import Job

    rows = []
    for job_id, args, result, status, path, finished in (
        Job.objects.filter(workspace=workspace)
        .values_list("id", "args", "result", "status", "trigger_path", "finished_at")
        .iterator(chunk_size=200)
    ):
        msg = (args or {}).get("msg", "")
        result_digest = digest(result) if isinstance(result, str) else None
        rows.append((job_id, message_key(msg), digest(msg), result_digest, status, path, finished))
    return rows


class Messages:
    """Every message written, by what became of it: its Job rows, and whether it was
    written to L1, before or after its death."""

    def __init__(self, run):
        feeds = run.feeds
        self.writes, self.failed_writes, self.conns = list(feeds.writes), list(feeds.failed_writes), dict(feeds.conns)
        self.rows = job_rows(run.workspace)
        self.rows_by_key = defaultdict(list)
        for row in self.rows:
            self.rows_by_key[row[1]].append(row)
        self.written = defaultdict(list)
        for cid, index, key, t in self.writes:
            self.written[key].append((cid, index, t))
        failed_keys = {w[2] for w in self.failed_writes}

        self.ok, self.not_success, self.multi_rows, self.wrong_content, self.missing_bad = [], [], [], [], []
        self.lost_after_kill, self.lost_before_kill, self.after_kill_with_job = [], [], 0
        self.near_kill, self.near_kill_with_job, self.l1_delivered_before = 0, 0, []
        self.poison_written, self.poison_ok = Counter(), Counter()
        self.latencies, self.pg_latencies = [], []
        for key, sends in self.written.items():
            self._account(run, key, sends, self.rows_by_key.get(key, []))
        self.phantom = [k for k in self.rows_by_key if k not in self.written and k not in failed_keys]
        self.uncertain_delivered = [k for k in self.rows_by_key if k not in self.written and k in failed_keys]

    def _account(self, run, key, sends, mine):
        kill = run.events.get("L1_killed")
        cid, index, t = sends[0]
        kind, want = run.feeds.poison.get(key, ("json", digest(key)))
        if kind != "json":
            self.poison_written[kind] += 1
        got_job = len(mine) == 1 and mine[0][4] == "success"
        if run.written_to_l1(cid) and t < kill and kill - t <= NEAR_KILL_SECS:
            self.near_kill += 1
            self.near_kill_with_job += got_job
        if got_job:
            self.ok.append(key)
            _, _, msg_digest, result_digest, _, path, finished = mine[0]
            if (msg_digest, result_digest, path) != (want, want, run.trigger_paths[index]):
                self.wrong_content.append((key, path, msg_digest == want, result_digest == want))
            elif kind != "json":
                self.poison_ok[kind] += 1
            if finished is not None:
                self.latencies.append(finished.timestamp() - t)
                if run.events["pg_down"] <= t <= run.events["pg_up"]:
                    self.pg_latencies.append(finished.timestamp() - t)
            if run.lost_with_l1(cid, t):
                self.after_kill_with_job += 1
            elif run.written_to_l1(cid):
                self.l1_delivered_before.append(kill - t)
        elif len(mine) > 1:
            self.multi_rows.append((key, [(str(r[0]), r[4]) for r in mine]))
        elif len(mine) == 1:
            self.not_success.append((key, mine[0][4], str(mine[0][0])))
        elif run.lost_with_l1(cid, t):
            self.lost_after_kill.append(key)
        elif run.written_to_l1(cid):
            self.lost_before_kill.append((key, kill - t))
        else:
            self.missing_bad.append((key, cid, self.conns[cid]["port"], clock(t)))


class Executions:
    """Executions of the chaos runnable by message (its log), and which duplicates the
    pool process kill and the Redis restart explain."""

    def __init__(self, run, messages):
        self.log = ExecLog(run.exec_log_path)
        self.log.poll()
        self.starts = Counter(msg for _, _, msg in self.log.starts)
        self.ends = Counter(msg for _, _, msg in self.log.ends)
        self.dups = {m: n for m, n in self.starts.items() if n > 1}
        self.killed_msg = run.killed_child["msg"]
        first_pid = {}
        for pid, t, msg in self.log.starts:
            first_pid.setdefault(msg, pid)
        # Redelivery of the broker message the killed process was running re-runs its
        # job (and, if that message carried several jobs, those it had already run).
        self.expected_dups = {m: n for m, n in self.dups.items() if first_pid[m] == run.killed_child["pid"]}
        self.other_dups = {m: n for m, n in self.dups.items() if m not in self.expected_dups}
        # A job running or in flight across the Redis restart may run twice (its ack, or
        # the listener's publish, was cut off): at-least-once. Anything else is a bug.
        window = (run.events["redis_down"] - 2.0, run.events["redis_up"] + 5.0)
        first_start = {}
        for pid, t, msg in self.log.starts:
            first_start.setdefault(msg, t)
        write_time = {key: sends[0][2] for key, sends in messages.written.items()}
        self.restart_dups = {
            m: n
            for m, n in self.other_dups.items()
            if window[0] <= first_start[m] <= window[1] or window[0] <= write_time.get(m, 0) <= window[1]
        }
        self.unexplained_dups = {m: n for m, n in self.other_dups.items() if m not in self.restart_dups}
        self.no_exec = [m for m in messages.ok if self.ends[m] == 0]


class ConnectionCloses:
    """Connection closes by whom, and when (server side)."""

    def __init__(self, run, conns):
        events, kill = run.events, run.events.get("L1_killed")
        outages = {
            "Redis restart": (events["redis_down"], events["redis_up"] + 3.0),
            "PostgreSQL restart": (events["pg_restart"], events["pg_restarted"] + 3.0),
            "PostgreSQL stopped": (events["pg_down"], events["pg_up"] + 3.0),
        }
        self.in_outage = [
            (name, c)
            for c in conns.values()
            for name, (begin, end) in outages.items()
            if c["closed"] and c["closed_by"] != "server" and begin <= c["closed"] <= end
        ]
        self.by_listeners_later = [
            c
            for c in conns.values()
            if c["closed"]
            and c["closed_by"] in ("client", "abnormal")
            and events["connected"] < c["closed"] < events["stopping"]
            and c["id"] not in run.l1_conns
        ]
        self.l1_abnormal = [
            c
            for c in conns.values()
            if c["closed"] and c["closed_by"] == "abnormal" and kill <= c["closed"] <= kill + 2
        ]
        self.by = Counter(c["closed_by"] for c in conns.values())
        self.max_live = max(run.feeds.max_live.values()) if run.feeds.max_live else 0


class LogEvidence:
    """What the listeners' and workers' logs say about the failures."""

    def __init__(self, logs):
        listener_logs = [logs["L1"], logs["L2"]]
        self.buffering = [grep(p, ["broker unavailable, buffering"], 3) for p in listener_logs]
        self.flushing = [grep(p, ["flushing"], 3) for p in listener_logs]
        self.worker_lost = [
            grep(logs[w], ["WorkerLostError", "exited with 'signal", "SIGKILL"], 3) for w in ("w1", "w2")
        ]
        self.tracebacks = {n: grep(p, ["Traceback"], 1)[1] for n, p in logs.items()}
        self.close_reasons = Counter()
        for name, path in zip(("L1", "L2"), listener_logs):
            for line in grep(path, ["connection closed ("], 100000)[0]:
                self.close_reasons[f"{name}: {line.split('connection closed (', 1)[1].rstrip(')')}"] += 1
        self.lease_lost = sum(grep(p, ["lease lost"], 1)[1] for p in listener_logs)
        self.database_retries = sum(grep(logs[w], ["database unreachable while"], 1)[1] for w in ("w1", "w2"))
        self.reconcile_failed = sum(grep(p, ["reconcile failed"], 1)[1] for p in listener_logs)


# The assertions, in the order their failures are listed.


def check_jobs(run, m, x):
    """(a): one successful job per message, with exactly what was sent."""
    run.check(
        not m.not_success, f"(a) {len(m.not_success)} messages whose job did not succeed, e.g. {m.not_success[:5]}"
    )
    run.check(not m.multi_rows, f"(a) {len(m.multi_rows)} messages with more than one Job row, e.g. {m.multi_rows[:5]}")
    run.check(not m.phantom, f"(a) {len(m.phantom)} Job rows for messages no feed wrote, e.g. {m.phantom[:5]}")
    run.check(not x.no_exec, f"(a) {len(x.no_exec)} successful jobs the runnable never recorded, e.g. {x.no_exec[:5]}")
    run.check(
        not m.wrong_content,
        f"(a) {len(m.wrong_content)} jobs whose msg, result or trigger is not what was sent: "
        f"(key, trigger path, msg ok, result ok) {m.wrong_content[:5]}",
    )
    run.check(
        all(m.poison_written[kind] for kind in POISON_KINDS) or POISON_FEEDS == 0,
        f"(a) not every kind of poison frame was written: {dict(m.poison_written)}",
    )


def check_l1(run, m, closes):
    """(b): only what was written to L1's sockets at or after its death may be lost."""
    run.check(
        not m.missing_bad,
        f"(b) {len(m.missing_bad)} messages without a job that were not written to L1: "
        f"e.g. (key, conn, client port, written at) {m.missing_bad[:5]}",
    )
    run.check(
        not m.lost_before_kill,
        f"(b) {len(m.lost_before_kill)} messages written to L1 before its death have no job: "
        f"(key, ms before the kill) {[(k, round(d * 1000, 1)) for k, d in m.lost_before_kill[:10]]}",
    )
    run.check(bool(run.l1_conns), "(b) could not find L1's sockets (via /proc) at the moment it was killed")
    abnormal_ids = {c["id"] for c in closes.l1_abnormal}
    mismatch = (abnormal_ids - run.l1_conns) | {
        cid for cid in run.l1_conns - abnormal_ids if m.conns[cid]["closed_by"] != "server"
    }
    run.check(
        not mismatch,
        f"(b) L1's sockets by /proc {sorted(run.l1_conns)} differ from the sockets closed abnormally "
        f"within 2s of the kill {sorted(abnormal_ids)}",
    )


def check_connections(run, closes):
    """(c), (d), the takeover of L1's triggers and no socket closed by an outage."""
    run.check(
        closes.max_live <= 1,
        f"(c) a trigger had {closes.max_live} live connections at once: "
        f"{[(clock(t), i, o) for t, i, o in run.feeds.overlaps[:5]]}",
    )
    run.check(
        all(n == 1 for n in run.final_live.values()),
        f"(d) server-side connections per trigger at the end: {run.final_live}",
    )
    run.check(
        all(s == "connected" for s in run.final_status.values()),
        f"(d) trigger statuses at the end: {run.final_status}",
    )
    slow = {i: d for i, d in run.takeover.items() if d is None or d > TAKEOVER_LIMIT_SECS}
    run.check(not slow, f"takeover: L1's triggers not reconnected within {TAKEOVER_LIMIT_SECS:g}s: {slow}")
    run.check(
        not closes.in_outage,
        "listener sockets closed during an outage: "
        f"{[(name, c['id'], c['trigger'], c['closed_by'], clock(c['closed'])) for name, c in closes.in_outage]}",
    )


def check_executions(run, x):
    """Duplicates only where explained; the killed pool process's job ran again."""
    run.check(
        not x.unexplained_dups,
        f"(a) duplicate executions not explained by the pool process kill or the "
        f"Redis restart: {dict(list(x.unexplained_dups.items())[:10])}",
    )
    run.check(
        not run.killed_child["finished_before_kill"],
        f"the pool process kill missed its job ({x.killed_msg} had ended before the signal)",
    )
    run.check(
        x.starts[x.killed_msg] >= 2 and x.ends[x.killed_msg] >= 1,
        f"the killed job {x.killed_msg} was not run again "
        f"({x.starts[x.killed_msg]} starts, {x.ends[x.killed_msg]} ends)",
    )


def trace_lost_messages(run, m):
    """{key: what the broker did with it} of the messages lost against the rules."""
    suspects = [k for k, *_ in m.missing_bad] + [k for k, _ in m.lost_before_kill]
    if not suspects:
        return {}
    try:
        return broker_trace(Path(run.work_dir) / "appendonlydir", suspects)
    except Exception as exc:  # diagnostics only
        return {key: f"could not read the broker's AOF: {exc!r}" for key in suspects}


# The summary


def secs(value):
    """Seconds as the summary shows them ("n/a" when nothing was measured)."""
    return "n/a" if value is None else f"{value:.2f}"


def summary_table(run, m, x, closes, logs):
    """[(label, value)] of the summary, in order."""
    takeover_done = [d for d in run.takeover.values() if d is not None]
    lat, pg_lat = m.latencies, m.pg_latencies
    per_kind = " / ".join(POISON_KINDS)
    return [
        ("seed", SEED),
        ("messages written by the feeds", len(m.writes)),
        ("  writes refused (connection closing)", len(m.failed_writes)),
        ("connections (server side)", len(m.conns)),
        ("  closed by the server (chaos drops)", closes.by["server"]),
        ("  closed by a listener", closes.by["client"]),
        ("  closed abnormally (no close frame)", closes.by["abnormal"]),
        ("  by listeners between 'connected' and the stop", len(closes.by_listeners_later)),
        ("  'lease lost' in listener logs", logs.lease_lost),
        ("max live connections per trigger", closes.max_live),
        ("Job rows", len(m.rows)),
        ("(a) messages with exactly one successful job", len(m.ok)),
        ("(a) messages whose job did not succeed", len(m.not_success)),
        ("(a) messages with several Job rows", len(m.multi_rows)),
        ("(a) Job rows for unknown messages", len(m.phantom)),
        ("    jobs for writes that raised (delivered anyway)", len(m.uncertain_delivered)),
        ("(a) jobs whose msg, result or trigger differ", len(m.wrong_content)),
        (f"(a) poison frames written ({per_kind})", " / ".join(str(m.poison_written[k]) for k in POISON_KINDS)),
        ("(a)   with one successful job, exact msg", " / ".join(str(m.poison_ok[k]) for k in POISON_KINDS)),
        ("executions recorded by the runnable", sum(x.starts.values())),
        ("duplicate executions (messages run > once)", len(x.dups)),
        ("  first run by the killed pool process", len(x.expected_dups)),
        ("  around the Redis restart (at-least-once)", len(x.restart_dups)),
        ("  unexplained (FAIL if > 0)", len(x.unexplained_dups)),
        ("(b) L1 sockets at its death (by /proc)", len(run.l1_conns)),
        ("(b) L1 sockets closed abnormally within 2s", len(closes.l1_abnormal)),
        ("(b) lost: written to L1 at/after its death", len(m.lost_after_kill)),
        ("(b)   written to L1 after its death, got a job", m.after_kill_with_job),
        (f"(b) written to L1 <= {NEAR_KILL_SECS * 1000:g} ms before its death", m.near_kill),
        ("(b)   of which got a job", m.near_kill_with_job),
        (
            "(b) newest L1 message with a job (ms before death)",
            f"{min(m.l1_delivered_before) * 1000:.1f}" if m.l1_delivered_before else "n/a",
        ),
        ("(b) lost: written to L1 before its death (FAIL if > 0)", len(m.lost_before_kill)),
        ("(b) lost otherwise (FAIL if > 0)", len(m.missing_bad)),
        ("takeover of L1's triggers (max s)", f"{max(takeover_done):.2f}" if takeover_done else "n/a"),
        ("(d) triggers with exactly one connection at end", sum(1 for n in run.final_live.values() if n == 1)),
        ("(d) triggers 'connected' in DB at end", sum(1 for s in run.final_status.values() if s == "connected")),
        ("PostgreSQL fast restart took (s)", f"{run.events['pg_restarted'] - run.events['pg_restart']:.2f}"),
        ("PostgreSQL stopped for (s)", f"{run.events['pg_up'] - run.events['pg_stopped']:.2f}"),
        ("  worker 'database unreachable' retries (logs)", logs.database_retries),
        ("  listener 'reconcile failed' (logs)", logs.reconcile_failed),
        (
            "  latency of messages written meanwhile p50/max (s)",
            f"{secs(percentile(pg_lat, 50))} / {secs(max(pg_lat, default=None))}",
        ),
        ("listener sockets closed during an outage (FAIL if > 0)", len(closes.in_outage)),
        (
            "latency write->job finished p50/p99/max (s)",
            f"{secs(percentile(lat, 50))} / {secs(percentile(lat, 99))} / {secs(max(lat, default=None))}",
        ),
        (
            "broker at end (queued / unacked)",
            f"{run.broker_at_end.get('queued')} / {run.broker_at_end.get('unacked')}",
        ),
        ("tracebacks in logs", ", ".join(f"{n}: {c}" for n, c in logs.tracebacks.items())),
    ]


def print_summary(run, m, x, closes, logs, lost_trace):
    print("", flush=True)
    print("=" * 78)
    print("CHAOS SUMMARY")
    print("=" * 78)
    for event in TIMELINE_EVENTS:
        if event in run.events:
            print(f"  {event:<22} {clock(run.events[event])}  (+{run.events[event] - T0:.1f}s)")
    print("-" * 78)
    table = summary_table(run, m, x, closes, logs)
    width = max(len(k) for k, _ in table)
    for key, value in table:
        print(f"  {key:<{width}}  {value}")
    print("-" * 78)
    print_details(run, m, x, logs, lost_trace)
    print("-" * 78)
    print("  logs:")
    for name, path in run.procs.logs.items():
        print(f"    {name:<4} {path}")
    print(f"    redis {run.redis.log_path}")
    print(f"    postgres {Path(run.log_dir) / 'postgres.log'} (copied at cleanup)")
    print(f"    executions {run.exec_log_path}")
    print("=" * 78, flush=True)


def print_details(run, m, x, logs, lost_trace):
    """What explains the figures: closes by reason, duplicates, lost messages, log lines."""
    print(f"  listener-side closes by reason (logs): {dict(sorted(logs.close_reasons.items()))}")
    kc = run.killed_child
    print(f"  killed pool process {kc['pid']}: job {kc['msg']} ({x.starts[x.killed_msg]} executions)")
    if x.other_dups:
        print("  other duplicate executions (msg: executions [pid@start]):")
        by_msg = defaultdict(list)
        for pid, t, msg in x.log.starts:
            if msg in x.other_dups:
                by_msg[msg].append(f"{pid}@{clock(t)}")
        for msg in list(x.other_dups)[:10]:
            print(f"    {msg}: {x.other_dups[msg]} [{', '.join(by_msg[msg])}]")
    if m.missing_bad:
        print("  messages lost, not written to L1 (key, conn, client port, written at) -> broker trace (AOF):")
        for key, cid, port, at in m.missing_bad[:10]:
            print(f"    {key} conn {cid} port {port} at {at} -> {lost_trace.get(key, '?')}")
    if m.lost_before_kill:
        print("  messages written to L1 before its death and lost (key, ms before the kill) -> broker trace (AOF):")
        for key, before in m.lost_before_kill[:10]:
            print(f"    {key} {before * 1000:.1f} ms -> {lost_trace.get(key, '?')}")
    for name, (lines, count) in zip(("L1", "L2"), logs.buffering):
        if count:
            print(f"  {name} buffered frames while Redis was away ({count}x): {lines[0]}")
    for name, (lines, count) in zip(("L1", "L2"), logs.flushing):
        for line in lines:
            print(f"  {name}: {line}")
    for name, (lines, count) in zip(("w1", "w2"), logs.worker_lost):
        for line in lines[:2]:
            print(f"  {name}: {line[:200]}")
