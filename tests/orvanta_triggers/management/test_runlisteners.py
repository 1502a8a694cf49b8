"""`manage.py runlisteners` as users run it: a separate process, stopped by a signal."""

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection

from tests.listener.helpers import make_trigger, wait_connected
from tests.wsserver import wait_for


def _database_url():
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_every_socket_within_5s(e2e_workspace, ws_server_factory, signum):
    """SIGTERM and SIGINT close every socket with a normal close and exit within 5 seconds."""
    servers = [ws_server_factory() for _ in range(2)]
    for index, server in enumerate(servers):
        make_trigger(e2e_workspace, server, path=f"f/test/t{index}")
    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": _database_url(),
        "ORVANTA_REDIS_PREFIX": settings.ORVANTA_REDIS_PREFIX,
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runlisteners", "--listener-id", "proc-1"],
        cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        for server in servers:
            wait_connected(server, timeout=20)
        started = time.monotonic()
        process.send_signal(signum)
        process.wait(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        if process.poll() is None:
            process.kill()
        output = process.stdout.read().decode()
    assert process.returncode == 0, output
    for server in servers:
        wait_for(lambda: server.close_codes, timeout=2, message="the close to be seen")
        assert server.close_codes == [1000]
