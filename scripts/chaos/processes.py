"""What the run starts and kills: the listener and worker processes, and the /proc
readings (pool children, a process's sockets) that aim the kills (Linux)."""

import os
import time
from pathlib import Path

from scripts.chaos.console import step
from scripts.chaos.knobs import ROOT, STOP_TIMEOUT_SECS
from tests.support.processes import Process

# /proc helpers (Linux)


def children_of(pid):
    """Pids whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def client_ports(pid, server_port):
    """Local ports of `pid`'s TCP sockets connected to 127.0.0.1:server_port."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[9] not in inodes:
                continue
            if int(parts[2].rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


# Processes


class Processes:
    """The run's processes by name (tests/support/processes.py's Process), their output
    in log_dir/<name>.log."""

    def __init__(self, env, log_dir):
        self.env = env
        self.log_dir = Path(log_dir)
        self.procs = {}
        self.logs = {}

    def start(self, name, args):
        log = self.log_dir / f"{name}.log"
        self.procs[name] = Process(args, self.env, ROOT, name=name, log_path=log)
        self.logs[name] = log
        return self.procs[name]

    def alive(self, name):
        return self.procs[name].alive()

    def stop(self, names, timeout=STOP_TIMEOUT_SECS):
        """SIGTERM to all at once, wait within one deadline, then SIGKILL what is left,
        and the leftovers of their process groups (pool children)."""
        procs = [self.procs[n] for n in names if n in self.procs]
        for proc in procs:
            proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in procs:
            proc.stop(max(deadline - time.monotonic(), 0.1))
            if proc.killed_at_stop:
                step(f"{proc.name} did not stop within {timeout:g}s: SIGKILL")

    def stop_all(self):
        self.stop(list(self.procs))
