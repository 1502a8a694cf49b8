"""`make conformance`'s report: the verdicts per case group and agent, the FAILED
cases with the server's reason, the target, and .run/conformance/summary.json.
"""

import json
from collections import Counter

from scripts.conformance_processes import loadavg
from scripts.conformance_settings import (
    AGENTS,
    CASE_TIMEOUT_SECS,
    CASES,
    CLIENT_AGENT,
    FAILING,
    GROUPS,
    LARGE_MESSAGE_GROUP,
    LISTENER_AGENT,
    LOG_DIR,
    REPORT_DIR,
    RUN_DIR,
    VERDICTS,
    group_of,
)


def read_verdicts(run):
    """{agent: {case id: verdict}} from the report, "not run" for a missing case."""
    index = json.loads((REPORT_DIR / "index.json").read_text())
    return {
        agent: {
            case_id: index.get(agent, {}).get(case_id, {}).get("behavior", "not run")
            for case_id in run.server.cases.values()
        }
        for agent in AGENTS
    }


def reason(run, agent, case_id):
    """The server's reason for a verdict, from the case's own report file, and
    whether the harness ended the case (CONFORMANCE_CASE_TIMEOUT_SECS)."""
    entry = json.loads((REPORT_DIR / "index.json").read_text()).get(agent, {}).get(case_id)
    parts = ["no result: the case never ended"]
    if entry is not None:
        case_report = json.loads((REPORT_DIR / entry["reportfile"]).read_text())
        parts = [case_report.get("result") or ""]
        if case_report.get("behaviorClose") not in ("OK", "INFORMATIONAL"):
            parts.append(f"close: {case_report.get('resultClose')}")
    if case_id in run.harness_timeouts[agent]:
        parts.append(f"ended by the harness after {CASE_TIMEOUT_SECS:g}s")
    return " / ".join(p for p in parts if p)


def report(run, total_secs):
    results = read_verdicts(run)
    ids = list(run.server.cases.values())
    groups = sorted({group_of(c) for c in ids}, key=int)
    summary = {"cases": len(ids), "timings": run.timings, "total_secs": round(total_secs, 1), "agents": {}}
    print(f"\nAutobahn|Testsuite fuzzing server, {len(ids)} cases ({', '.join(CASES)})", flush=True)
    for agent in AGENTS:
        verdicts = results[agent]
        limits = "" if agent == CLIENT_AGENT else " (ORVANTA_MAX_MESSAGE_BYTES: default, 32 MiB for group 9)"
        print(f"\n{agent}{limits}")
        header = f"{'group':<22}{'cases':>6}" + "".join(f"{v:>15}" for v in VERDICTS)
        print(header)
        per_group = {}
        for group in [*groups, "all"]:
            in_group = [c for c in ids if group == "all" or group_of(c) == group]
            counts = Counter(verdicts[c] for c in in_group)
            per_group[group] = {v: counts.get(v, 0) for v in VERDICTS}
            label = "all" if group == "all" else f"{group} {GROUPS.get(group, '')}"
            print(f"{label:<22}{len(in_group):>6}" + "".join(f"{counts.get(v, 0):>15}" for v in VERDICTS))
        failed = [c for c in ids if verdicts[c] in FAILING]
        print(f"FAILED or not run ({len(failed)}): {', '.join(failed) or 'none'}")
        for case_id in failed:
            print(f"  {case_id:<8} {verdicts[case_id]:<14} {reason(run, agent, case_id)[:200]}")
        retried = run.retried[agent]
        print(
            f"run again alone after FAILED ({len(retried)}): "
            + (", ".join(f"{c} {first} -> {again}" for c, (first, again) in retried.items()) or "none")
        )
        summary["agents"][agent] = {
            "groups": per_group,
            "failed": {c: verdicts[c] for c in failed},
            "non_strict": [c for c in ids if verdicts[c] == "NON-STRICT"],
            "ended_by_harness": run.harness_timeouts[agent],
            "run_again": {c: {"first": first, "again": again} for c, (first, again) in retried.items()},
        }
    listener, client = results[LISTENER_AGENT], results[CLIENT_AGENT]
    small_failed = [c for c in ids if group_of(c) != LARGE_MESSAGE_GROUP and listener[c] in FAILING]
    listener_only = [c for c in ids if listener[c] in FAILING and client[c] not in FAILING]
    client_only = [c for c in ids if client[c] in FAILING and listener[c] not in FAILING]
    print(f"\nFAILED by the listener only: {', '.join(listener_only) or 'none'}")
    print(f"FAILED by the plain client only: {', '.join(client_only) or 'none'}")
    met = not small_failed and not listener_only
    print(
        f"target (no listener case failed in groups 1-7, none failed that the plain client passes): "
        f"{'met' if met else 'MISSED'}"
    )
    print(f"report: {REPORT_DIR / 'index.html'}; logs: {LOG_DIR}")
    print("time: " + ", ".join(f"{phase} {secs:g}s" for phase, secs in run.timings.items()))
    load = (run.load_at_start, loadavg())
    print(f"load average (1 min, 2 shared cores): {load[0]:g} at the start, {load[1]:g} at the end")
    print(f"total time {total_secs:.0f}s", flush=True)
    summary.update(listener_only=listener_only, client_only=client_only, target_met=met, load_average=load)
    (RUN_DIR / "summary.json").write_text(json.dumps(summary, indent=2))
    return met
