"""Resolved by the registry tests, which check that resolving never imports it."""


def main(msg: str):
    return msg
