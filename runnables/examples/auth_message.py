"""An initial-message runnable: its dict result is sent as JSON right after connecting."""


def main(token: str = "demo-token", channel: str = "ticks"):
    return {"op": "auth", "token": token, "subscribe": channel}
