"""Private message brokers for end-to-end tests, each on free ports of 127.0.0.1 with
its configuration, data and logs in a temporary directory of its own, deleted when it
stops:

- Mosquitto (Debian's /usr/sbin/mosquitto): MQTT over WebSocket on one port (what a
  trigger connects to) and plain MQTT on another (what a test publishes on);
- RabbitMQ (Debian's rabbitmq-server) as a node of its own, orvanta-test-<pid>@localhost,
  with the rabbitmq_web_stomp plugin (what a trigger connects to) and rabbitmq_stomp
  (plain STOMP, what a test sends on). Its Erlang port mapper (epmd) is its own too, on
  a free port: an Erlang node finding no epmd starts one as a daemon, which would
  outlive the tests.

The machine's shared brokers (Mosquitto on 1883; the RabbitMQ node rabbit@localhost on
5672 and its epmd on 4369) are never started, stopped or configured from here.

Also here: just enough MQTT 3.1.1 and STOMP 1.2 to build the frames tests send, and
to publish on the plain ports.
"""

import contextlib
import glob
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.ports import free_port

logger = logging.getLogger(__name__)

MOSQUITTO = "/usr/sbin/mosquitto"
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
# A loaded 2-core machine boots a RabbitMQ node in about 8 s.
STARTUP_TIMEOUT_SECS = 60
SOCKET_TIMEOUT_SECS = 5


# MQTT 3.1.1 packets (https://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html)

MQTT_CONNACK = 2
MQTT_PUBLISH = 3
MQTT_SUBACK = 9
MQTT_PINGRESP = 13
MQTT_PINGREQ = b"\xc0\x00"
MQTT_DISCONNECT = b"\xe0\x00"


def _mqtt_string(text):
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _mqtt_packet(first_byte, body):
    """A fixed header (type and flags, remaining length as a variable-length integer) and `body`."""
    length, encoded = len(body), bytearray()
    while True:
        length, digit = divmod(length, 128)
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            return bytes([first_byte]) + bytes(encoded) + body


def mqtt_connect(client_id, *, keepalive_secs):
    """CONNECT, clean session, no credentials."""
    clean_session = 0x02
    variable_header = _mqtt_string("MQTT") + bytes([4, clean_session]) + keepalive_secs.to_bytes(2, "big")
    return _mqtt_packet(0x10, variable_header + _mqtt_string(client_id))


def mqtt_subscribe(topic, *, packet_id=1):
    """SUBSCRIBE to one topic at QoS 0."""
    return _mqtt_packet(0x82, packet_id.to_bytes(2, "big") + _mqtt_string(topic) + b"\x00")


def mqtt_publish(topic, payload):
    """PUBLISH at QoS 0, not retained: also exactly what the broker forwards to a QoS 0 subscriber."""
    return _mqtt_packet(0x30, _mqtt_string(topic) + payload)


def mqtt_packet_type(packet):
    return packet[0] >> 4


# STOMP 1.2 frames (https://stomp.github.io/stomp-specification-1.2.html)


def stomp_frame(command, headers=None, body=""):
    """A frame as text: the command, header lines, a blank line, the body and a NUL."""
    lines = [command, *(f"{name}:{value}" for name, value in (headers or {}).items()), "", body]
    return "\n".join(lines) + "\x00"


def _recv_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def _recv_stomp_frame(sock):
    """The next frame's text, without its NUL; heart-beat newlines before it are skipped."""
    data = b""
    while True:
        byte = _recv_exactly(sock, 1)
        if byte == b"\x00":
            return data.decode()
        if data or byte != b"\n":
            data += byte


def _log_tails(paths, lines=30):
    return "\n".join(
        f"{path}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        for path in paths
        if path.exists()
    )


def _wait_until_ready(process, probe, *, what, logs):
    """Poll probe() until it answers True, failing at once if `process` exits and at the deadline otherwise."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} while starting:\n{_log_tails(logs)}")
        try:
            if probe():
                return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{what} not ready after {STARTUP_TIMEOUT_SECS}s:\n{_log_tails(logs)}")
        time.sleep(0.1)


def _accepts_connections(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def _stop(process, *, signum=signal.SIGTERM, timeout=10):
    """Send `signum` to the process group `process` leads (it was started in a session of
    its own) and wait for `process`; SIGKILL the group after `timeout`."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signum)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


class PrivateMosquitto:
    """start() -> self; `url` (MQTT over WebSocket) for triggers, publish() on the plain MQTT port; destroy()."""

    def __init__(self):
        self.ws_port = free_port()
        self.mqtt_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="orvanta-test-mosquitto-"))
        self.log_path = self.dir / "mosquitto.log"
        self.process = None

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.ws_port}/mqtt"

    def start(self):
        config = self.dir / "mosquitto.conf"
        # Logs go to stdout, a file of ours: run as root, Mosquitto drops to its own user
        # before opening a log file, which could not write in this directory.
        config.write_text(
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stdout\n"
            "log_type all\n"
            # Mosquitto 2.0.11 binds a websockets listener to every interface, whatever
            # address it is given (the plain listener does honour it).
            f"listener {self.ws_port} 127.0.0.1\n"
            "protocol websockets\n"
            f"listener {self.mqtt_port} 127.0.0.1\n"
            "protocol mqtt\n"
        )
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(config)],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_until_ready(
            self.process,
            lambda: self._answers_connect() and _accepts_connections(self.ws_port),
            what=f"mosquitto (ports {self.ws_port}, {self.mqtt_port})",
            logs=[self.log_path],
        )
        logger.info("private mosquitto: websockets on %s, mqtt on %s", self.ws_port, self.mqtt_port)
        return self

    def _answers_connect(self):
        with self._session("orvanta-test-ready"):
            return True

    @contextlib.contextmanager
    def _session(self, client_id):
        """A plain-MQTT socket, connected (CONNACK checked); DISCONNECT on the way out."""
        with socket.create_connection(("127.0.0.1", self.mqtt_port), timeout=SOCKET_TIMEOUT_SECS) as sock:
            sock.sendall(mqtt_connect(client_id, keepalive_secs=10))
            connack = _recv_exactly(sock, 4)
            if mqtt_packet_type(connack) != MQTT_CONNACK or connack[3] != 0:
                raise ConnectionError(f"mosquitto refused the connection: {connack.hex()}")
            yield sock
            sock.sendall(MQTT_DISCONNECT)

    def publish(self, topic, *payloads):
        """Publish each payload (bytes) on `topic` at QoS 0, in order, over plain MQTT.
        Mosquitto handles a connection's packets in order, so they are routed before its
        DISCONNECT is."""
        with self._session(f"orvanta-test-publisher-{os.getpid()}") as sock:
            sock.sendall(b"".join(mqtt_publish(topic, payload) for payload in payloads))

    def destroy(self):
        try:
            _stop(self.process)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _epmd_binary():
    found = shutil.which("epmd") or next(iter(glob.glob("/usr/lib/erlang/erts-*/bin/epmd")), None)
    if found is None:
        raise RuntimeError("no epmd (Debian's erlang-base, a dependency of rabbitmq-server)")
    return found


class PrivateRabbitMQ:
    """launch() -> self, then wait_ready() -> self (a node takes seconds of CPU to boot,
    which a test session can overlap with other tests); `url` (STOMP over WebSocket) for
    triggers, send() on the plain STOMP port; destroy()."""

    def __init__(self):
        self.node_name = f"orvanta-test-{os.getpid()}@localhost"
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.stomp_port = free_port()
        self.web_stomp_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="orvanta-test-rabbitmq-"))
        self.log_dir = self.dir / "log"
        self.startup_log = self.log_dir / "startup.log"
        self.epmd = None
        self.process = None

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.web_stomp_port}/ws"

    @property
    def node_log(self):
        return self.log_dir / f"{self.node_name}.log"

    def launch(self):
        """Start epmd and the node, not waiting for the node to boot."""
        self.log_dir.mkdir()
        config = self.dir / "rabbitmq.conf"
        config.write_text(
            f"stomp.listeners.tcp.1 = 127.0.0.1:{self.stomp_port}\n"
            "web_stomp.tcp.ip = 127.0.0.1\n"
            f"web_stomp.tcp.port = {self.web_stomp_port}\n"
        )
        plugins = self.dir / "enabled_plugins"
        plugins.write_text("[rabbitmq_stomp,rabbitmq_web_stomp].\n")
        # Our own, empty: the shared /etc/rabbitmq/rabbitmq-env.conf names the shared node.
        conf_env = self.dir / "rabbitmq-env.conf"
        conf_env.write_text("")
        # A fresh environment: none of the caller's RABBITMQ_* or ERL_* settings apply.
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": "C.UTF-8",
            # The node's Erlang cookie is created in $HOME.
            "HOME": str(self.dir),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_CONF_ENV_FILE": str(conf_env),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            # Never an epmd daemon of the node's own (ours answers), and distribution on
            # the loopback interface only.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}",
        }
        with open(self.startup_log, "wb") as log:
            self.epmd = subprocess.Popen(
                [_epmd_binary(), "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            _wait_until_ready(
                self.epmd,
                lambda: _accepts_connections(self.epmd_port),
                what=f"epmd on {self.epmd_port}",
                logs=[self.startup_log],
            )
            # The script itself, not Debian's /usr/sbin wrapper, which would run it as
            # the rabbitmq user from /var/lib/rabbitmq.
            self.process = subprocess.Popen(
                [RABBITMQ_SERVER],
                cwd=self.dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self):
        """Wait until the node takes STOMP connections, on both ports."""
        _wait_until_ready(
            self.process,
            lambda: self._answers_connect() and _accepts_connections(self.web_stomp_port),
            what=f"rabbitmq node {self.node_name}",
            logs=[self.startup_log, self.node_log],
        )
        logger.info(
            "private rabbitmq %s: web_stomp on %s, stomp on %s", self.node_name, self.web_stomp_port, self.stomp_port
        )
        return self

    def _connect(self):
        """A plain STOMP connection as guest (CONNECTED checked)."""
        sock = socket.create_connection(("127.0.0.1", self.stomp_port), timeout=SOCKET_TIMEOUT_SECS)
        try:
            sock.sendall(
                stomp_frame(
                    "CONNECT", {"accept-version": "1.2", "host": "/", "login": "guest", "passcode": "guest"}
                ).encode()
            )
            answer = _recv_stomp_frame(sock)
            if not answer.startswith("CONNECTED\n"):
                raise ConnectionError(f"rabbitmq answered CONNECT with {answer!r}")
        except BaseException:
            sock.close()
            raise
        return sock

    def _answers_connect(self):
        self._connect().close()
        return True

    def send(self, destination, *bodies):
        """SEND each body (text) to `destination`, in order, over plain STOMP; returns once
        the broker has processed them all (a RECEIPT for the last)."""
        with self._connect() as sock:
            frames = [stomp_frame("SEND", {"destination": destination}, body) for body in bodies]
            frames.append(stomp_frame("DISCONNECT", {"receipt": "sent"}))
            sock.sendall("".join(frames).encode())
            answer = _recv_stomp_frame(sock)
            if not answer.startswith("RECEIPT\n"):
                raise ConnectionError(f"rabbitmq answered SEND with {answer!r}")

    def destroy(self):
        try:
            # SIGKILL: the node's data is deleted with it, so a clean shutdown (2 s) buys
            # nothing. The group holds the rabbitmq-server script and the node it waits
            # on, and no process survives SIGKILL; the node's helpers (erl_child_setup,
            # inet_gethost, in sessions of their own) exit when it is gone.
            _stop(self.process, signum=signal.SIGKILL)
            _stop(self.epmd)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
