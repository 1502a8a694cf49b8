#!/usr/bin/env bash
# Make sure Redis answers at $REDIS_URL; start a local redis-server when none does.
set -euo pipefail
url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
py="${PYTHON:-.venv/bin/python}"
ping() { "$py" -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()" "$url" 2>/dev/null; }
if ping; then exit 0; fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "No Redis answers at $url and redis-server is not installed: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set REDIS_URL." >&2
  exit 1
fi
port=$("$py" -c "import sys; from urllib.parse import urlsplit; print(urlsplit(sys.argv[1]).port or 6379)" "$url")
mkdir -p .run
echo "starting a local redis-server on port $port (log: .run/redis.log)"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --logfile "$PWD/.run/redis.log" --pidfile "$PWD/.run/redis.pid"
for _ in $(seq 50); do ping && exit 0; sleep 0.1; done
echo "redis-server did not come up; see .run/redis.log" >&2
exit 1
