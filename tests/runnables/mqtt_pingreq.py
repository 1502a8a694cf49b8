"""An initial-message runnable that returns bytes (an MQTT PINGREQ packet)."""


def main():
    return b"\xc0\x00"
