"""The failures the chaos timeline inflicts (Redis restart, PostgreSQL restart and
outage, SIGKILL of a busy pool process, SIGKILL of a listener), each timed and
followed by what its aftermath is judged on."""

import os
import signal
import time

from scripts.chaos.console import ChaosFailure, step
from scripts.chaos.evidence import ExecLog
from scripts.chaos.knobs import (
    PG_DOWN_SECS,
    REDIS_DOWN_SECS,
    TAKEOVER_LIMIT_SECS,
)
from scripts.chaos.processes import children_of, client_ports


class Faults:
    """Part of Chaos: uses its processes, stores, feeds, `events` and check_alive(), and
    records what the report needs (the killed pool process, L1's sockets and triggers,
    the takeover times)."""

    def restart_redis(self):
        step(f"Redis on port {self.redis.port}: graceful SHUTDOWN")
        self.events["redis_down"] = time.time()
        self.redis.stop()
        step(f"Redis is down; restarting in {REDIS_DOWN_SECS:g}s on the same port and dir")
        time.sleep(REDIS_DOWN_SECS)
        self.redis.start()
        self.events["redis_up"] = time.time()
        step("Redis is back")

    def restart_postgres(self):
        step("PostgreSQL: pg_ctl restart -m fast")
        self.events["pg_restart"] = time.time()
        self.postgres.restart(mode="fast")
        self.events["pg_restarted"] = time.time()
        self._reconnect_database()
        step(f"PostgreSQL restarted in {self.events['pg_restarted'] - self.events['pg_restart']:.2f}s")

    def stop_postgres(self):
        step(f"PostgreSQL: pg_ctl stop -m fast; starting it again in {PG_DOWN_SECS:g}s")
        self.events["pg_down"] = time.time()
        self.postgres.stop(mode="fast")
        self.events["pg_stopped"] = time.time()
        deadline = self.events["pg_stopped"] + PG_DOWN_SECS
        while time.time() < deadline:
            self.check_alive("while PostgreSQL is stopped")
            time.sleep(0.2)
        self.postgres.start()
        self.events["pg_up"] = time.time()
        self._reconnect_database()
        step(f"PostgreSQL is back after {self.events['pg_up'] - self.events['pg_stopped']:.2f}s stopped")

    @staticmethod
    def _reconnect_database():
        """This process's connection died with the server: the next query opens another."""
        from django.db import connections

        connections.close_all()

    def kill_worker_child(self):
        w1 = self.procs.procs["w1"].pid
        exec_log = ExecLog(self.exec_log_path)
        deadline = time.time() + 15
        killed = None
        while time.time() < deadline and killed is None:
            exec_log.poll()
            children = set(children_of(w1))
            now = time.time()
            # A job that has just started: it surely still runs (sleeps) when the signal lands.
            candidates = sorted(
                ((t, pid, msg) for pid, (msg, t) in exec_log.running.items() if pid in children and now - t < 0.010),
                reverse=True,
            )
            if candidates:
                t, pid, msg = candidates[0]
                before = time.time()
                os.kill(pid, signal.SIGKILL)
                killed = (pid, msg, t, before)
                break
            time.sleep(0.002)
        if killed is None:
            raise ChaosFailure("found no pool process of w1 running a job within 15s")
        pid, msg, started, at = killed
        self.events["worker_child_killed"] = at
        time.sleep(0.5)
        exec_log.poll()
        ended = [e for e in exec_log.ends if e[0] == pid]
        self.killed_child = {
            "pid": pid,
            "msg": msg,
            "started": started,
            "at": at,
            "finished_before_kill": any(e[2] == msg and e[1] <= at for e in ended),
        }
        step(f"SIGKILL pool process {pid} of w1 (pid {w1}) {1000 * (at - started):.0f} ms into job {msg}")

    def kill_listener(self, WebSocketTrigger):
        l1 = self.procs.procs["L1"]
        held = set(
            WebSocketTrigger.objects.filter(workspace=self.workspace, listener_id="L1").values_list("path", flat=True)
        )
        # Freeze it first, so that the sockets read from /proc are exactly those it had
        # when it stopped running (no connect can slip in between), then kill it. Its
        # death is the freeze: it never runs another instruction after that.
        at = time.time()
        os.kill(l1.pid, signal.SIGSTOP)
        ports = client_ports(l1.pid, self.feeds.port)
        os.kill(l1.pid, signal.SIGKILL)
        after = time.time()
        l1.popen.wait(5)
        self.events["L1_killed"] = at
        with self.feeds.lock:
            self.l1_conns = {
                cid
                for cid, c in self.feeds.conns.items()
                if c["port"] in ports and c["opened"] <= after and (c["closed"] is None or c["closed"] >= at)
            }
            self.l1_triggers = {self.feeds.conns[cid]["trigger"] for cid in self.l1_conns}
        index_of = {path: i for i, path in self.trigger_paths.items()}
        self.l1_triggers |= {index_of[path] for path in held if path in index_of}
        step(
            f"SIGSTOP+SIGKILL listener L1 (pid {l1.pid}, {1000 * (after - at):.0f} ms between the two): "
            f"it held {len(self.l1_conns)} live sockets "
            f"(client ports {sorted(ports)}), DB says it held {len(held)} triggers"
        )
        # Takeover: each of L1's triggers gets a new connection within TTL + 2 s.
        deadline = at + TAKEOVER_LIMIT_SECS + 3
        while time.time() < deadline:
            if all(self._reconnected_after(i, at) is not None for i in self.l1_triggers):
                break
            time.sleep(0.1)
        self.takeover = {i: self._reconnected_after(i, at) for i in self.l1_triggers}
        done = [d for d in self.takeover.values() if d is not None]
        step(
            f"takeover: {len(done)}/{len(self.l1_triggers)} of L1's triggers reconnected, "
            f"slowest after {max(done) if done else float('nan'):.2f}s (limit {TAKEOVER_LIMIT_SECS:g}s)"
        )

    def _reconnected_after(self, index, at):
        with self.feeds.lock:
            opened = [c["opened"] for c in self.feeds.conns.values() if c["trigger"] == index and c["opened"] > at]
        return min(opened) - at if opened else None
