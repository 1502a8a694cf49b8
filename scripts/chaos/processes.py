"""What the run starts and kills: the listener and worker processes, the private
redis-server, and the /proc readings (pool children, a process's sockets) that aim
the kills (Linux)."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from scripts.chaos.console import ChaosFailure, step
from scripts.chaos.knobs import ROOT, STOP_TIMEOUT_SECS
from tests.support.ports import free_port

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
    def __init__(self, env, log_dir):
        self.env = env
        self.log_dir = Path(log_dir)
        self.procs = {}
        self.logs = {}

    def start(self, name, args):
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs[name] = proc
        self.logs[name] = log
        return proc

    def alive(self, name):
        return self.procs[name].poll() is None

    def stop(self, names, timeout=STOP_TIMEOUT_SECS):
        """SIGTERM, wait, then SIGKILL what is left, and the leftovers of their
        process groups (pool children)."""
        names = [n for n in names if n in self.procs]
        for name in names:
            proc = self.procs[name]
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for name in names:
            proc = self.procs[name]
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                step(f"{name} did not stop within {timeout:g}s: SIGKILL")
                proc.kill()
                proc.wait(5)
            self._kill_group(proc)

    @staticmethod
    def _kill_group(proc):
        # Started with start_new_session: its pgid is its pid. Kill stragglers only.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop_all(self):
        self.stop(list(self.procs))


class PrivateRedis:
    def __init__(self, data_dir, log_dir):
        self.port = free_port()
        self.data_dir = data_dir
        self.log = Path(log_dir) / "redis.log"
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.cli = shutil.which("redis-cli")
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)

    def start(self):
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                # Never rewritten: broker_trace replays the whole history from the AOF.
                "--auto-aof-rewrite-percentage",
                "0",
                "--logfile",
                str(self.log),
                "--protected-mode",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ChaosFailure(f"redis-server exited with {self.proc.returncode}; see {self.log}")
            try:
                if self.client().ping():
                    return
            except Exception:
                time.sleep(0.05)
        raise ChaosFailure(f"redis-server on port {self.port} did not answer within 10s")

    def shutdown(self):
        """Graceful: SHUTDOWN (the AOF is fsynced on every write anyway)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.cli:
            subprocess.run([self.cli, "-p", str(self.port), "shutdown"], capture_output=True, timeout=15)
        else:
            try:
                self.client().shutdown()
            except Exception:
                pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
