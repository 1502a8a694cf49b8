import logging
import os

from celery import Celery
from celery.signals import task_received, worker_init, worker_process_shutdown, worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("orvanta")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def serve_worker_metrics(**_):
    """Job metrics on ORVANTA_WORKER_METRICS_PORT, gathered from every pool process
    when prometheus-client runs in multiprocess mode."""
    from django.conf import settings
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

    if not settings.ORVANTA_WORKER_METRICS_PORT:
        return
    registry = REGISTRY
    if settings.PROMETHEUS_MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(settings.ORVANTA_WORKER_METRICS_PORT, registry=registry)


@worker_process_shutdown.connect
def forget_pool_process_metrics(pid=None, **_):
    from django.conf import settings

    if settings.PROMETHEUS_MULTIPROC_DIR:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


_keeper = None


@worker_ready.connect
def keep_held_messages(**_):
    """Renew the messages this worker holds, so that only a dead worker's go elsewhere."""
    global _keeper
    from orvanta_triggers.heldmessages import HeldMessagesKeeper

    _keeper = HeldMessagesKeeper(app).start()


@worker_shutdown.connect
def stop_keeping_held_messages(**_):
    global _keeper
    if _keeper is not None:
        _keeper.stop()
        _keeper = None


@task_received.connect
def note_received(request=None, **_):
    """Keep renewing the message until it is acknowledged (see heldmessages), and tell
    listeners this worker has it (see listener.dispatch: a message lost between the
    broker's pop and the worker's record is sent again)."""
    from orvanta_triggers import bus
    from orvanta_triggers.heldmessages import note_held
    from orvanta_triggers.tasks import RUN_TRIGGER_JOBS

    note_held(request)
    if request.name == RUN_TRIGGER_JOBS:
        try:
            bus.note_received(request.id)
        except bus.redis.RedisError as exc:
            logging.getLogger(__name__).warning("message %s: could not note its receipt: %s", request.id, exc)
