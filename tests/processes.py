"""The product's own processes (runlisteners, celery worker) as subprocesses of a
test, pointed at the test database and this test process's Redis keys."""

import os
import signal
import subprocess
import sys
import tempfile

from django.conf import settings
from django.db import connection


def database_url():
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


# Proxy variables, in either case, are the test's to give (conftest.no_machine_proxies).
PROXY_VARIABLES = {"http_proxy", "https_proxy", "no_proxy"}


def process_env(**extra):
    return {
        **{name: value for name, value in os.environ.items() if name.lower() not in PROXY_VARIABLES},
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "ORVANTA_REDIS_PREFIX": settings.ORVANTA_REDIS_PREFIX,
        **extra,
    }


class Process:
    def __init__(self, args, env):
        # Output goes to a file, not a pipe: a busy process would fill a pipe nobody
        # reads until stop() and block on its next log line.
        self._output = tempfile.TemporaryFile()
        self.popen = subprocess.Popen(
            args,
            cwd=settings.BASE_DIR,
            env=env,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._terminated = False

    @property
    def pid(self):
        return self.popen.pid

    def signal(self, signum):
        self.popen.send_signal(signum)

    def kill(self):
        """SIGKILL, as a crash would."""
        self.popen.kill()
        self.popen.wait(5)

    def terminate(self):
        """SIGTERM, once, without waiting (stop() waits): processes stopping side by side."""
        if self.popen.poll() is None and not self._terminated:
            self.popen.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout=10):
        """SIGTERM (unless terminate() sent it) and wait; the process's output."""
        if self.popen.poll() is None:
            self.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        if not self._output.closed:
            self._output.seek(0)
            self.output = self._output.read().decode(errors="replace")
            self._output.close()
        return self.output


def start_listener(listener_id, *, metrics_port=None, **env):
    args = [sys.executable, "manage.py", "runlisteners", "--listener-id", listener_id]
    if metrics_port:
        args += ["--metrics-port", str(metrics_port)]
    return Process(args, process_env(**env))


def start_worker(name, *, concurrency=1, **env):
    # The queues tests/settings.py names after the process's ORVANTA_REDIS_PREFIX.
    prefix = env.get("ORVANTA_REDIS_PREFIX", settings.ORVANTA_REDIS_PREFIX)
    return Process(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-n",
            f"{name}@%h",
            "--pool",
            "prefork",
            "--concurrency",
            str(concurrency),
            "-Q",
            f"{prefix}jobs,{prefix}runnables",
            "--loglevel",
            "INFO",
        ],
        process_env(**env),
    )
