def main(msg: str):
    return msg.upper()
