"""Log lines: JSON objects, one per line, when LOG_FORMAT=json."""

import json
import logging
import subprocess
import sys

from django.conf import settings

from orvanta_triggers.logging import JsonFormatter


def test_json_formatter_writes_one_object_per_record():
    """A record becomes one JSON object with time, level, logger and the formatted message."""
    record = logging.LogRecord(
        "listener.connection", logging.WARNING, __file__, 1, "trigger %s: %s", ("f/a", "down"), None
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING" and entry["logger"] == "listener.connection"
    assert entry["message"] == "trigger f/a: down" and "ts" in entry


def test_log_format_json_applies_to_the_commands():
    """With LOG_FORMAT=json a management command's log lines are JSON."""
    output = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, logging; django.setup(); logging.getLogger('orvanta').warning('trigger %s: hi', 'f/x')",
        ],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
        env={
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_SECRET_KEY": "x" * 50,
            "LOG_FORMAT": "json",
            "PATH": "/usr/bin:/bin",
        },
    ).stderr.strip()
    assert json.loads(output)["message"] == "trigger f/x: hi"
