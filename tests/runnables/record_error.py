"""An error handler that records the keyword arguments of every call."""

CALLS = []


def main(**kwargs):
    CALLS.append(kwargs)
