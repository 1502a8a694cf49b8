"""This project's Celery app: `celery -A config worker`. The app's worker behaviour
(metrics, held messages) comes with orvanta_triggers (workersignals)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("orvanta")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
