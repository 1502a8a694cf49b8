"""A flow step that takes its time: doubles x after `delay` seconds."""

import time


def main(x: float, delay: float = 0):
    time.sleep(delay)
    return x * 2
