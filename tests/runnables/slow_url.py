"""A URL runnable that takes its time: sleeps `seconds`, then returns `url`."""

import time


def main(url: str, seconds: float):
    time.sleep(seconds)
    return url
