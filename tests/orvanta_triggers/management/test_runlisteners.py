"""`manage.py runlisteners` as users run it: a separate process, stopped by a signal."""

import signal
import time

import pytest

from tests.listener.helpers import make_trigger, wait_connected
from tests.support.processes import start_listener
from tests.support.wsserver import wait_for


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_every_socket_within_5s(e2e_workspace, ws_server_factory, signum):
    """SIGTERM and SIGINT close every socket with a normal close and exit within 5 seconds."""
    servers = [ws_server_factory() for _ in range(2)]
    for index, server in enumerate(servers):
        make_trigger(e2e_workspace, server, path=f"f/test/t{index}")
    process = start_listener("proc-1")
    try:
        for server in servers:
            wait_connected(server, timeout=20)
        started = time.monotonic()
        process.signal(signum)
        process.popen.wait(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        output = process.stop()
    assert process.popen.returncode == 0, output
    for server in servers:
        wait_for(lambda: server.close_codes, timeout=2, message="the close to be seen")
        assert server.close_codes == [1000]
