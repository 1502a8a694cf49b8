"""Request bodies: DRF's JSON parser, with JSON too deep to parse a 400 like any other."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from orvanta_triggers import fieldchecks


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            # Python's json gives up near 1,000 levels; nothing we store nests that deep.
            raise ParseError(f"JSON parse error - the body {fieldchecks.TOO_DEEP}") from exc
