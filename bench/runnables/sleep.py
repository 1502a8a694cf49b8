"""Bench runnable (script path `sleep`): an I/O-bound job. Waits the `sleep` seconds
its JSON message names, as an HTTP call would, and returns the message."""

import json
import time


def main(msg: str):
    time.sleep(json.loads(msg)["sleep"])
    return msg
