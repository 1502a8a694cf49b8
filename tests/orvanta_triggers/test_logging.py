"""Log lines: one per event, text or JSON objects (LOG_FORMAT=json), whatever a message holds."""

import json
import logging
import subprocess
import sys

from django.conf import settings

from orvanta_triggers.logging import JsonFormatter, TextFormatter, untrusted


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


def test_text_lines_escape_line_breaks_in_messages():
    """A message carrying CR, LF or other line breaks is one text line, a forged line included."""
    record = logging.LogRecord(
        "django.request", logging.WARNING, __file__, 1, "Not Found: %s", ("/x\r\n2024 ERROR forged\u2028\x85",), None
    )
    line = TextFormatter("%(levelname)s %(name)s %(message)s").format(record)
    assert line == "WARNING django.request Not Found: /x\\r\\n2024 ERROR forged\\u2028\\x85"


def test_text_lines_keep_our_tracebacks():
    """A traceback still follows its message on lines of its own."""
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = TextFormatter("%(message)s").format(record)
    assert line.startswith("failed\nTraceback (most recent call last):") and line.endswith("ValueError: boom")


def test_untrusted_text_is_cut_and_escaped():
    """Text from outside is cut to 200 characters, saying how long it was, with escapes that can't be forged."""
    assert untrusted("a\\nb\nc") == "a\\\\nb\\nc"
    shown = untrusted("y" * 1000)
    assert shown == "y" * 200 + "… (1000 characters)"


def test_the_text_format_keeps_the_commands_lines_whole():
    """With the default text format, a message holding a line break is logged on one line."""
    output = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, logging; django.setup(); logging.getLogger('orvanta').warning('got %s', 'a\\nERROR forged')",
        ],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
        env={"DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_SECRET_KEY": "x" * 50, "PATH": "/usr/bin:/bin"},
    ).stderr
    assert output.count("\n") == 1 and output.rstrip().endswith("WARNING orvanta got a\\nERROR forged")
