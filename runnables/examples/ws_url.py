"""A URL runnable (trigger url "$script:examples/ws_url"): builds the URL to connect
to from its arguments, e.g. to put an auth token in the query string."""

from urllib.parse import urlencode


def main(base_url: str, token: str = ""):
    return f"{base_url}?{urlencode({'token': token})}" if token else base_url
