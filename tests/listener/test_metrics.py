"""Prometheus metrics from the listener (--metrics-port) and from workers
(ORVANTA_WORKER_METRICS_PORT, prefork pool in multiprocess mode)."""

import tempfile
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from orvanta_triggers.models import Job
from tests.listener.helpers import make_trigger, wait_connected, wait_jobs
from tests.support.ports import free_port
from tests.support.processes import start_listener, start_worker
from tests.support.wsserver import wait_for


def scrape(port):
    """{(name, labels as a sorted tuple): value} of every sample, or {} when not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_listener_metrics_count_frames_connections_and_dispatches(e2e_workspace, ws_server):
    """The listener's metrics show its connection, the frames in and the jobs dispatched."""
    port = free_port()
    make_trigger(e2e_workspace, ws_server)
    listener = start_listener("metrics-listener", metrics_port=port)
    try:
        wait_connected(ws_server, timeout=20)
        for n in range(5):
            ws_server.send_all(f"m{n}")

        def counted():
            samples = scrape(port)
            return samples.get(("orvanta_listener_frames_dispatched_total", ())) == 5 and samples

        samples = wait_for(counted, timeout=10, message="five dispatched frames")
        assert samples[("orvanta_listener_frames_in_total", (("msg_type", "text"),))] == 5
        assert samples[("orvanta_listener_connections", (("status", "connected"),))] == 1
        assert samples[("orvanta_listener_leases_held", ())] == 1
        assert samples[("orvanta_listener_dispatch_latency_seconds_count", ())] == 5
    finally:
        listener.stop()


def test_worker_metrics_count_jobs_across_pool_processes(e2e_workspace, ws_server, listener):
    """A prefork worker's metrics add up the jobs its pool processes ran, by outcome."""
    port = free_port()
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    with tempfile.TemporaryDirectory() as multiproc_dir:
        worker = start_worker(
            "metrics-worker",
            concurrency=2,
            ORVANTA_WORKER_METRICS_PORT=str(port),
            PROMETHEUS_MULTIPROC_DIR=multiproc_dir,
        )
        try:
            for n in range(4):
                ws_server.send_all(f"m{n}")
            wait_jobs(count=4, status=Job.Status.SUCCESS, timeout=30)
            samples = wait_for(
                lambda: (
                    scrape(port).get(("orvanta_jobs_finished_total", (("status", "success"),)), 0) >= 4 and scrape(port)
                ),
                timeout=10,
                message="four successes counted",
            )
            # At least: the worker may also take jobs earlier tests left in this queue.
            assert samples[("orvanta_job_duration_seconds_count", ())] >= 4
        finally:
            worker.stop()
