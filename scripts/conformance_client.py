"""The plain websocket-client echo client of `make conformance`, in a process of its own
(its pure-Python work on multi-MiB messages must not take the harness's GIL): runs the
given Autobahn cases against the fuzzing server, `concurrency` at a time, as a user of
websocket-client's public API would write an echo client: `create_connection`,
`recv_data` (which answers pings and the closing handshake), `send` (text, as received)
and `send_binary`, and on an exception the close code RFC 6455 asks for (1007 for a
text message that is not UTF-8, 1002 for any other protocol error).

    python -m scripts.conformance_client ws://127.0.0.1:9001 websocket-client 3 1 2 3 ...

(server URL, agent, concurrency, case numbers). Logs one line when done.
"""

import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import websocket

logger = logging.getLogger(__name__)

# A case the server never ends (it always does, at its own deadline) still ends here.
CASE_TIMEOUT_SECS = 120


def run_case(server, agent, case):
    ws = websocket.create_connection(f"{server}/runCase?case={case}&agent={agent}", timeout=CASE_TIMEOUT_SECS)
    try:
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_TEXT:
                # The payload as received, not decoded here: what is measured is
                # websocket-client's own UTF-8 check, not one of ours.
                ws.send(data, websocket.ABNF.OPCODE_TEXT)
            elif opcode == websocket.ABNF.OPCODE_BINARY:
                ws.send_binary(data)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                # recv_data has answered the close frame: only the socket is left to close.
                return
    except websocket.WebSocketPayloadException:
        ws.close(websocket.STATUS_INVALID_PAYLOAD, timeout=2)
    except websocket.WebSocketProtocolException:
        ws.close(websocket.STATUS_PROTOCOL_ERROR, timeout=2)
    except (websocket.WebSocketException, OSError) as exc:
        # The server dropped the connection (some cases end that way) or went silent.
        logger.debug("case %s: %r", case, exc)
    finally:
        ws.shutdown()


def main(argv):
    server, agent, concurrency, *cases = argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.monotonic()
    with ThreadPoolExecutor(int(concurrency)) as pool:
        for case, future in [(case, pool.submit(run_case, server, agent, case)) for case in cases]:
            try:
                future.result()
            except Exception:
                logger.exception("case %s could not be run", case)
    logger.info("%s: %d cases in %.1fs", agent, len(cases), time.monotonic() - started)


if __name__ == "__main__":
    main(sys.argv[1:])
