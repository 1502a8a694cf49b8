"""A Redis outage: the listener keeps its sockets, buffers what arrives, and flushes
it in order once Redis answers again. Runs on a private redis-server it can stop."""

import urllib.request

from orvanta_triggers.models import Job
from tests.listener.helpers import make_trigger, wait_connected, wait_jobs
from tests.support.ports import free_port
from tests.support.processes import start_listener, start_worker
from tests.support.wsserver import wait_for


def backlog(metrics_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("orvanta_listener_dispatch_backlog "):
                return float(line.split()[1])
    return 0.0


def test_frames_received_during_a_redis_outage_become_jobs_in_order(e2e_workspace, ws_server, private_redis):
    """Sockets stay open while Redis is down; frames received meanwhile all become jobs, in order."""
    make_trigger(e2e_workspace, ws_server)
    metrics_port = free_port()
    listener = start_listener("outage-listener", metrics_port=metrics_port, REDIS_URL=private_redis.url)
    worker = start_worker("outage-worker", concurrency=1, REDIS_URL=private_redis.url)
    processes = [listener, worker]
    try:
        wait_connected(ws_server, timeout=20)
        ws_server.send_all("before")
        wait_jobs(count=1, status=Job.Status.SUCCESS, timeout=20)

        private_redis.stop()
        messages = [f"during-{n}" for n in range(10)]
        for message in messages:
            ws_server.send_all(message)
        wait_for(lambda: backlog(metrics_port) >= 1, timeout=10, message="frames buffered in the listener")
        private_redis.start()

        jobs = wait_jobs(count=11, status=Job.Status.SUCCESS, timeout=30)
        in_order = [j.args["msg"] for j in sorted(jobs, key=lambda j: j.started_at)]
        assert in_order == ["before", *messages]
        assert ws_server.connects == 1 and ws_server.open_connections == 1
    finally:
        for process in processes:
            process.terminate()
        outputs = [p.stop() for p in processes]
    assert "broker unavailable" in outputs[0] and "Redis restarted: sent again" in outputs[0]
