import signal
import threading

from django.core.management.base import BaseCommand
from prometheus_client import start_http_server

from listener.supervisor import Supervisor
from orvanta_triggers.celeryapp import celery_app


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
        Supervisor(celery_app=celery_app(), stop_event=stop_event, listener_id=listener_id).run()
