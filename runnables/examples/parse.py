"""A flow step: parse the message as JSON (the flow example of DESIGN.md)."""

import json


def main(msg: str):
    return json.loads(msg)
