"""Log formatting: one line per event (text, or JSON lines when LOG_FORMAT=json),
whatever a message holds; and how text from outside is shown in one."""

import json
import logging
from datetime import datetime, timezone


class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# Line breaks and other control characters as escapes: text from outside (a path, a
# frame, a close reason) can't start a line of its own and pass for another event.
_ESCAPES = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))},
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
# Text from outside is cut to this many characters in a log line.
UNTRUSTED_TEXT_CHARS = 200


def one_line(text):
    """`text` with line breaks and other control characters escaped."""
    return text.translate(_ESCAPES)


def untrusted(text, limit=UNTRUSTED_TEXT_CHARS):
    """Text from outside as a log line shows it: escaped (see one_line), its
    backslashes doubled so that an escape can't be forged, and cut to `limit`
    characters, saying how long it was."""
    shown = one_line(text[:limit].replace("\\", "\\\\"))
    return shown if len(text) <= limit else f"{shown}… ({len(text)} characters)"


class TextFormatter(logging.Formatter):
    """The text format, with the message on one line (a traceback, ours, follows)."""

    def formatMessage(self, record):
        record.message = one_line(record.message)
        return super().formatMessage(record)
