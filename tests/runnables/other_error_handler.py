"""A second error handler (a trigger-level one), recording its calls apart."""

CALLS = []


def main(**kwargs):
    CALLS.append(kwargs)
