"""A real HTTP proxy for tests: Debian's tinyproxy on a free loopback port, with its own
configuration and log in a temporary directory. Its log shows each CONNECT it served."""

import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.support.ports import free_port
from tests.support.wsserver import wait_for

CONNECT_LINE_RE = re.compile(r"Request \(file descriptor \d+\): CONNECT (\S+) HTTP/")


class Tinyproxy:
    def __init__(self, *, credentials=None, refuse_connect=False):
        """`credentials`: (user, password) it requires (Basic); `refuse_connect`: every
        CONNECT is answered 403 (tinyproxy's ConnectPort, here allowing no real port)."""
        self.dir = Path(tempfile.mkdtemp(prefix="orvanta-tinyproxy-"))
        self.port = free_port()
        self.credentials = credentials
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 60",
            f'LogFile "{self.dir / "tinyproxy.log"}"',
            # Connect is the level that logs each request line, CONNECT included.
            "LogLevel Connect",
            "MaxClients 50",
        ]
        if credentials:
            lines.append(f"BasicAuth {credentials[0]} {credentials[1]}")
        if refuse_connect:
            lines.append("ConnectPort 1")
        (self.dir / "tinyproxy.conf").write_text("\n".join(lines) + "\n")
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user, password):
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def start(self):
        binary = shutil.which("tinyproxy")
        if binary is None:
            raise RuntimeError("tinyproxy is not installed (make setup installs it: apt-get install tinyproxy-bin)")
        self.process = subprocess.Popen(
            [binary, "-d", "-c", str(self.dir / "tinyproxy.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self._accepts, timeout=10, message=f"tinyproxy on port {self.port}")
        return self

    def _accepts(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"tinyproxy exited with {self.process.returncode}: {self.log()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def log(self):
        path = self.dir / "tinyproxy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def connects(self):
        """The targets (host:port) of the CONNECT requests it received, in order."""
        return CONNECT_LINE_RE.findall(self.log())

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
