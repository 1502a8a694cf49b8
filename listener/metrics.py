"""Prometheus metrics of the listener process (served by runlisteners --metrics-port)."""

from prometheus_client import Counter, Gauge, Histogram

FRAMES_IN = Counter("orvanta_listener_frames_in_total", "Frames received from WebSocket servers", ["msg_type"])
# Bound once: a labels() lookup per frame costs more than the increment.
TEXT_FRAMES_IN = FRAMES_IN.labels("text")
BINARY_FRAMES_IN = FRAMES_IN.labels("binary")
FRAMES_MATCHED = Counter("orvanta_listener_frames_matched_total", "Frames that passed the trigger's filters")
FRAMES_DISPATCHED = Counter("orvanta_listener_frames_dispatched_total", "Jobs handed to the Celery broker")
FRAMES_DROPPED = Counter("orvanta_listener_frames_dropped_total", "Frames not turned into jobs", ["reason"])
RESULTS_SENT = Counter("orvanta_listener_results_sent_total", "Job results sent back on a socket")
RESULTS_UNDELIVERED = Counter("orvanta_listener_results_undelivered_total", "Results with no live connection to go to")
HEARTBEATS_SENT = Counter("orvanta_listener_heartbeats_sent_total", "Heartbeat messages sent")
RECONNECTS = Counter("orvanta_listener_reconnects_total", "Connection attempts after the first")
CONNECTION_CRASHES = Counter(
    "orvanta_listener_connection_crashes_total", "Connections ended by an unexpected error (a bug), then reconnected"
)
CONNECTIONS = Gauge("orvanta_listener_connections", "Connections held, by status", ["status"])
LEASES_HELD = Gauge("orvanta_listener_leases_held", "Trigger leases held by this listener")
DISPATCH_BACKLOG = Gauge("orvanta_listener_dispatch_backlog", "Frames waiting for the broker")
DISPATCH_LATENCY = Histogram(
    "orvanta_listener_dispatch_latency_seconds",
    "From a frame's arrival to its job being handed to the broker",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
)
JOBS_RESENT = Counter(
    "orvanta_listener_jobs_resent_total", "Jobs sent again: after Redis restarted, or lost on their way to a worker"
)
