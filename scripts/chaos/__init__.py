"""`make chaos`: the whole system (2 listeners, 2 Celery workers, a private Redis, a
private PostgreSQL server, 20 WebSocket feeds) under failures, with exact accounting
of every message the feeds wrote.

The feeds send numbered JSON messages; the first CHAOS_POISON_FEEDS of them also send
a poison frame every CHAOS_POISON_EVERY_SECS, in turn: text with U+0000 (a STOMP
MESSAGE frame), a 200,000-deep JSON array, a ~0.9 MB text frame and a binary frame.
Each carries a `poison:<trigger>-<seq>` tag (a prefix, the innermost string of the
array, the first bytes of the binary payload) that the chaos runnable and the
accounting recover (scripts/chaos_runnables/chaos_record.py: message_key).

Timeline: all triggers connected -> run -> graceful Redis restart -> run ->
PostgreSQL fast restart (pg_ctl restart -m fast) -> run -> PostgreSQL stopped for
CHAOS_PG_DOWN_SECS -> run -> SIGKILL of a pool process of worker w1 while it runs a
job -> run -> SIGKILL of listener L1 (frozen with SIGSTOP a few ms before, to read its
sockets exactly) -> run -> stop the feeds -> wait for the jobs -> stop everything ->
summary + assertions:

  (a) every message written, poison frames included, produced exactly one Job row,
      status success, on its trigger, whose msg (the base64 of the payload for a
      binary frame) and result (what the runnable saw) are exactly what was sent;
      duplicate executions, counted from the chaos runnable's execution log, are
      allowed only for the killed pool process's message and around the Redis
      restart;
  (b) the only messages without a job were written to L1's sockets at or after the
      moment L1 was frozen; one written to L1 before that and lost fails the run
      (how long before the kill each was written is printed);
  (c) no trigger ever had two live connections at once (server side);
  (d) every trigger is connected at the end (DB status and exactly one server-side
      connection each);
  plus: L1's triggers are taken over within ORVANTA_LEASE_TTL_SECS + 2 s, and no
  listener socket is closed while Redis or PostgreSQL is away.

Everything it starts (Redis, PostgreSQL, listeners, workers, feeds, work dir) is torn
down in `finally`, even on failure; the process logs (PostgreSQL's included) stay in
a logs directory whose path is printed at the end.

Knobs (environment): CHAOS_TRIGGERS (20), CHAOS_RATE (messages/s per trigger, 2),
CHAOS_PHASE_SECS (20), CHAOS_DROP_MIN_SECS/CHAOS_DROP_MAX_SECS (5/15),
CHAOS_REDIS_DOWN_SECS (3), CHAOS_PG_DOWN_SECS (10), CHAOS_POISON_FEEDS (4),
CHAOS_POISON_EVERY_SECS (3), CHAOS_SLEEP_MS (job duration range, "20-60"),
CHAOS_DRAIN_TIMEOUT_SECS (150), CHAOS_SEED, CHAOS_KEEP_WORK_DIR (1: keep the work dir,
e.g. the broker's AOF). On failure the broker's AOF is copied next to the logs
(redis-aof/).

The private PostgreSQL server, the private redis-server, the processes' wrapper, the
feeds' server machinery, free ports and percentiles come from the support kit the
suite and bench share (tests/support/).

Modules: knobs (the settings above), feeds (the WebSocket servers), processes (what it
starts and kills), faults (the failures of the timeline), scenario (the run, from
setup to cleanup), evidence (execution log, broker AOF, process logs), report (the
accounting, the assertions and the summary); __main__ runs it.
"""
