"""A private PostgreSQL server for tests that restart or stop the database: a
brand-new cluster (Debian's initdb and pg_ctl) in a temporary directory, on a free
port of 127.0.0.1, trust authentication, fsync off. The shared server on 5432 is
never touched.

PostgreSQL refuses to run as root, so when the tests run as root the binaries run
as the `postgres` OS user (runuser), in a directory that user owns. pg_ctl's -w
waits until the server accepts connections (or has stopped) and fails at its -t
deadline, or as soon as the server exits, with the log's tail in the error. Start
and restart always pass -l: without it the server would write to pg_ctl's stdout,
and hold that pipe open.
"""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from tests.support.ports import free_port

PG_CTL_TIMEOUT_SECS = 30
OS_USER = "postgres"


def postgres_bin_dir():
    """The newest of Debian's /usr/lib/postgresql/<version>/bin."""
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not candidates:
        raise RuntimeError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
    newest = max(candidates, key=lambda path: int(Path(path).parent.parent.name))
    return Path(newest).parent


class PrivatePostgres:
    """start() -> self, restart(), stop() and start() again on the same data, destroy()."""

    def __init__(self):
        self.port = free_port()
        self.bin_dir = postgres_bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="orvanta-test-postgres-"))
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.dir, OS_USER, OS_USER)

    def url(self, dbname="postgres"):
        """A postgres:// URL of `dbname` on this server, usable as DATABASE_URL."""
        return f"postgres://{OS_USER}@127.0.0.1:{self.port}/{dbname}"

    def start(self):
        """Create the cluster on first use, start it, and wait until it accepts connections."""
        if not self.data_dir.exists():
            self._init_cluster()
        self._pg_ctl("start", "-l", str(self.log_path))
        return self

    def restart(self, mode="fast"):
        """pg_ctl restart -m `mode`: every client connection is dropped."""
        self._pg_ctl("restart", "-m", mode, "-l", str(self.log_path))

    def stop(self, mode="fast"):
        """Stop the server, keeping its data for a later start()."""
        self._pg_ctl("stop", "-m", mode)

    def is_running(self):
        return self._run("pg_ctl", "status", "-D", str(self.data_dir)).returncode == 0

    def destroy(self):
        """Stop the server if it runs and delete the cluster and its log."""
        try:
            if self.data_dir.exists() and self.is_running():
                self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def create_database(self, name, template=None):
        """Create database `name` (a copy of database `template`, if given); its URL."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as admin:
            admin.execute(statement)
        return self.url(name)

    def _init_cluster(self):
        initdb = self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            OS_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            "--no-instructions",
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
        # Appended by root to a file the postgres user owns: the owner stays postgres.
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
            )

    def _pg_ctl(self, action, *args):
        result = self._run("pg_ctl", action, "-D", str(self.data_dir), "-w", "-t", str(PG_CTL_TIMEOUT_SECS), *args)
        if result.returncode != 0:
            raise RuntimeError(
                f"pg_ctl {action} failed on port {self.port}:\n{result.stdout}{result.stderr}\n"
                f"{self.log_path}:\n{self._log_tail()}"
            )

    def _run(self, program, *args):
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", OS_USER, "--", *command]
        return subprocess.run(
            command,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PG_CTL_TIMEOUT_SECS + 10,
        )

    def _log_tail(self, lines=20):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
