import gc
import signal
import threading

from django.core.management.base import BaseCommand
from prometheus_client import start_http_server

from listener.supervisor import Supervisor
from orvanta_triggers.celeryapp import celery_app

# The cyclic collector's thresholds in a listener process. With the defaults (700,
# 10, 10), 10,000 connections beating every second promote their short-lived timer
# objects to the oldest generation within a second, and a full collection (walking
# the ~800,000 objects the connections hold, with the GIL, so every heartbeat waits)
# ran every few seconds, 0.3-0.7 s each. Young collections of at most 50,000 objects
# take milliseconds, and objects a second old are rarely still alive at the rarer
# middle-generation collections, so full ones come minutes apart.
GC_THRESHOLDS = (50_000, 50, 10)


class Command(BaseCommand):
    help = "Hold the WebSocket connections of enabled triggers and turn their messages into jobs."

    def add_arguments(self, parser):
        parser.add_argument("--listener-id", help="Stable name of this listener (default: host:pid:random).")
        parser.add_argument("--metrics-port", type=int, help="Serve Prometheus metrics on this port.")

    def handle(self, *args, listener_id=None, metrics_port=None, **options):
        stop_event = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop_event.set())
        if metrics_port:
            start_http_server(metrics_port)
        # What is loaded by now (modules, settings) lives as long as the process: no
        # collection needs to walk it again.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        Supervisor(celery_app=celery_app(), stop_event=stop_event, listener_id=listener_id).run()
        # Stopped cleanly: the interpreter's last collections need not walk what
        # thousands of closed connections leave behind before the process exits.
        gc.freeze()
