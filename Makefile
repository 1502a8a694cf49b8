PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench chaos conformance setup clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	./scripts/ensure_chromium.sh
	./scripts/ensure_tinyproxy.sh
	./scripts/ensure_brokers.sh
	touch $(STAMP)

setup: $(STAMP)

run: export DJANGO_DEBUG ?= true
run: $(STAMP)
	./scripts/ensure_redis.sh
	$(PY) manage.py migrate --noinput
	$(PY) manage.py setupdemo
	rm -rf .run/worker-metrics && mkdir -p .run/worker-metrics
	@echo ""
	@echo "  admin      http://127.0.0.1:8000/admin/          (admin / admin)"
	@echo "  monitor    http://127.0.0.1:8000/monitor/demo/"
	@echo "  API docs   http://127.0.0.1:8000/api/docs/"
	@echo "  metrics    http://127.0.0.1:9100/metrics (listener)   http://127.0.0.1:9101/metrics (worker)"
	@echo ""
	$(VENV)/bin/honcho start -f Procfile

test: $(STAMP) lint
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) db.sqlite3* test_db.sqlite3* .run

# Chaos run: 2 listeners, 2 workers, a private Redis and a private PostgreSQL under failures (scripts/chaos/).
chaos: $(STAMP)
	$(PY) -m scripts.chaos

# RFC 6455 conformance: Autobahn|Testsuite's fuzzing server (installed on first use in .run/wstest by
# scripts/ensure_wstest.sh) against a real listener + worker and a plain websocket-client (scripts/conformance.py).
conformance: $(STAMP)
	$(PY) -m scripts.conformance

# Benchmarks: private Redis, fresh PostgreSQL database, listener + worker subprocesses (bench/).
bench: $(STAMP)
	$(PY) -m bench
