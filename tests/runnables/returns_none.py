def main(msg: str):
    return None
