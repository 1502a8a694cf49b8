"""Readers of what the scenarios measure and report: /proc (RSS, CPU, load, room for
the connections a scenario opens), the product's revision, and Prometheus metrics.
"""

import os
import resource
import subprocess
import time
import urllib.request

from bench.harness import ROOT, BenchError

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# /proc


def rss_bytes(pid):
    """Resident set size of `pid` (VmRSS)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def cpu_seconds(pid):
    """User + system CPU time of `pid` (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_percent(pid, secs):
    """Percent of one core `pid` used over the next `secs` seconds."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(secs)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    return 100.0 * (c1 - c0) / (t1 - t0)


def cpu_percents(pids, secs):
    """Percent of one core each of `pids` used over the same next `secs` seconds."""
    c0, t0 = [cpu_seconds(pid) for pid in pids], time.monotonic()
    time.sleep(secs)
    c1, t1 = [cpu_seconds(pid) for pid in pids], time.monotonic()
    return [100.0 * (b - a) / (t1 - t0) for a, b in zip(c0, c1)]


# Files a process needs beside its sockets to the servers: Redis and database
# connections, pipes, logs, the metrics endpoint.
OTHER_FILES = 256


def ensure_room(connections, what):
    """Make sure `connections` sockets fit: in each process holding one end of them
    (the bench process holds the server ends; a listener or the baseline client the
    others, and they inherit this process's limit), and in the local port range.
    Raises the soft open-files limit up to the hard one if needed, or fails now with a
    clear message rather than with EMFILE half-way through."""
    needed = connections + OTHER_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise BenchError(
                f"{what} needs about {needed:,} open files in each of the bench process (the server ends), "
                f"the listener(s) and the baseline client, but `ulimit -n` allows at most {hard:,}: "
                f"raise it or lower the number of triggers"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(x) for x in f.read().split())
    if high - low + 1 < connections:
        raise BenchError(
            f"{what} opens {connections:,} connections to one server port, but net.ipv4.ip_local_port_range "
            f"({low}-{high}) has only {high - low + 1:,} ports: widen it or lower the number of triggers"
        )


def loadavg():
    """The 1-minute load average (the machine is shared: a busy one skews figures)."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def revision():
    """The product's commit, and the files changed in the working tree (read-only git)."""

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "changed_files": changed}


# Prometheus text


def scrape(port, timeout=2.0):
    """{metric name with labels: value} from a Prometheus endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            continue
    return values


def metric(port, name, default=0.0):
    try:
        return scrape(port).get(name, default)
    except OSError:
        return None
