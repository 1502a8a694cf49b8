"""The scale scenario's rows: the product against bare websocket-client threads,
each figure with its target.
"""

from bench.harness import Row
from bench.scalestats import EDIT_CAP_SECS, EDIT_WATCH_SECS, STOP_CAP_SECS

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


def fmt_secs(value, cap):
    return f"{value:.2f} s" if value is not None else f"> {cap:g} s"


def rows(n, knobs, prod, base):
    relative = n >= RELATIVE_FROM
    label = "bare websocket-client threads"
    suffix = f", <= {RELATIVE_FACTOR:g}x bare" if relative else ""
    cap = knobs["connect_cap"]

    def close_enough(measured, baseline):
        return not relative or _le(measured, None if baseline is None else RELATIVE_FACTOR * baseline)

    def within_lost_or_close(measured, baseline):
        """A lost baseline percentile (None: it fell on a missing interval) is
        infinitely late: any measured one is within a factor of it."""
        if baseline is None:
            return measured is not None
        return close_enough(measured, baseline)

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
            f"{fmt_secs(prod['status_written_secs'], cap)} after the plan flip",
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
            _le(hb["p99_ms"], LATENESS_TARGET_MS) and within_lost_or_close(hb["p99_ms"], base_hb["p99_ms"]),
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
            note=f"all closed at the server after {fmt_secs(stop['closed_secs'], STOP_CAP_SECS)}, exited after "
            f"{fmt_secs(stop['exited_secs'], STOP_CAP_SECS)} (status {stop['exit_status']}); {stop['unclean']:,} "
            f"of {stop['closed']:,} closed without a close frame, {stop['still_open']:,} still open "
            f"(bare: {base_stop['unclean']:,} unclean, all closed after "
            f"{fmt_secs(base_stop['closed_secs'], STOP_CAP_SECS)}); {_lag(prod, base, 'stop')}",
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
            note=f"the bench process, which holds the server ends (feedserver.FeedServer); the product's "
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
