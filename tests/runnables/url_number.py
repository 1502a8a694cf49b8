"""A broken URL runnable: returns a number instead of a URL string."""


def main():
    return 42
