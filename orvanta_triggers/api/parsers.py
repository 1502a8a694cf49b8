"""Request bodies: DRF's JSON parser, with JSON too deep to parse a 400 like any other."""

import io

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from orvanta_triggers import fieldchecks, filters


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read()
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        # Refused before parsing: filters.too_deep_to_parse says why. A body that does
        # not decode gets DRF's own error below.
        if filters.too_deep_to_parse(body.decode(encoding, errors="replace")):
            raise ParseError(
                f"JSON parse error - the body nests deeper than {filters.MAX_JSON_DEPTH} levels of arrays and"
                f" objects; a JSON field takes at most {fieldchecks.MAX_JSON_DEPTH}"
            )
        return super().parse(io.BytesIO(body), media_type, parser_context)
