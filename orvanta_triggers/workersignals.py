"""What a Celery worker of the app does besides running tasks, hooked on Celery's
signals (connected when Django loads the app, so any project's Celery app gets them):
job metrics over HTTP, keeping the messages it holds (heldmessages), and sweeping
abandoned jobs (sweeper)."""

import logging

from celery.signals import task_received, worker_init, worker_process_shutdown, worker_ready, worker_shutdown
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

from orvanta_triggers import brokertransport, bus, conf
from orvanta_triggers.heldmessages import HeldMessagesKeeper, note_held
from orvanta_triggers.sweeper import AbandonedJobSweeper
from orvanta_triggers.wire import RUN_TRIGGER_JOBS

logger = logging.getLogger(__name__)

# The main process's threads, from worker_ready to worker_shutdown.
_threads = []


@worker_init.connect
def serve_worker_metrics(**_):
    """Job metrics on ORVANTA_WORKER_METRICS_PORT, gathered from every pool process
    when prometheus-client runs in multiprocess mode."""
    if not conf.worker_metrics_port():
        return
    registry = REGISTRY
    if conf.prometheus_multiproc_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(conf.worker_metrics_port(), registry=registry)


@worker_process_shutdown.connect
def forget_pool_process_metrics(pid=None, **_):
    if conf.prometheus_multiproc_dir():
        multiprocess.mark_process_dead(pid)


@worker_ready.connect
def start_worker_threads(sender=None, **_):
    """Renew the messages this worker holds, so that only a dead worker's go
    elsewhere; and sweep the jobs dead workers left `running`."""
    _threads.extend([HeldMessagesKeeper(sender.app).start(), AbandonedJobSweeper().start()])


@worker_shutdown.connect
def stop_worker_threads(**_):
    while _threads:
        _threads.pop().stop()


@task_received.connect
def note_received(request=None, **_):
    """Keep renewing the message until it is acknowledged (see heldmessages), and tell
    listeners this worker has it (see listener.dispatch: a message lost between the
    broker's pop and the worker's record is sent again), unless the transport did when
    it took the message (brokertransport)."""
    note_held(request)
    if request.name == RUN_TRIGGER_JOBS and not brokertransport.notes_receipts(request.message):
        try:
            bus.note_received(request.id)
        except bus.redis.RedisError as exc:
            logger.warning("message %s: could not note its receipt: %s", request.id, exc)
