"""The product page's preprocessor example: parse the message as JSON and hand its
`content` and the connection URL to main as keyword arguments."""

import json


def preprocessor(event: dict):
    if event["kind"] != "websocket":
        raise ValueError("Expected a websocket event")
    msg = json.loads(event["msg"])
    return {"message_content": msg["content"], "url": event["url"]}


def main(message_content: str, url: str):
    return {"content": message_content, "url": url}
