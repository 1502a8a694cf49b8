"""A JSON field that stores any JSON value Python can hold, on every database.

PostgreSQL's jsonb (and text) refuse U+0000 and lone surrogates (U+D800-U+DFFF), which
frames, script results and error messages may contain: a STOMP frame ends with NUL.
Strings are stored escaped instead: each such code point, and the escape character
itself (U+E000, private use), becomes U+E000 followed by its four hex digits. Reading
reverses it, so what a script saw, returned or raised reads back exactly. The same codec
runs on SQLite, so a database's contents never depend on its engine.
"""

import re

from django.db import models

ESCAPE = "\ue000"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff\ue000]")
_ESCAPED = re.compile("\ue000([0-9a-f]{4})")


def _escape_code_point(match):
    return f"{ESCAPE}{ord(match.group()):04x}"


def _unescape_code_point(match):
    return chr(int(match.group(1), 16))


def _map_strings(value, convert):
    """`value` with `convert` applied to every string in it, dict keys included."""
    if isinstance(value, str):
        return convert(value)
    if isinstance(value, dict):
        return {_map_strings(key, convert): _map_strings(item, convert) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_map_strings(item, convert) for item in value]
    return value


def _escape_str(text):
    return _UNSTORABLE.sub(_escape_code_point, text) if _UNSTORABLE.search(text) else text


def _unescape_str(text):
    return _ESCAPED.sub(_unescape_code_point, text) if ESCAPE in text else text


def to_storable(value):
    """The JSON value as stored: strings escaped as described above."""
    return _map_strings(value, _escape_str)


def from_storable(value):
    """The inverse of to_storable."""
    return _map_strings(value, _unescape_str)


class StorableJSONField(models.JSONField):
    """models.JSONField whose strings round-trip exactly on PostgreSQL too."""

    def get_prep_value(self, value):
        return to_storable(super().get_prep_value(value))

    def from_db_value(self, value, expression, connection):
        return from_storable(super().from_db_value(value, expression, connection))
