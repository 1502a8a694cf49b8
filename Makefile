PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench setup clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP)

run: export DJANGO_DEBUG ?= true
run: $(STAMP)
	./scripts/ensure_redis.sh
	$(PY) manage.py migrate --noinput
	$(PY) manage.py setupdemo
	@echo "admin: http://127.0.0.1:8000/admin/   API: http://127.0.0.1:8000/api/w/demo/websocket_triggers/"
	$(VENV)/bin/honcho start -f Procfile

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) db.sqlite3* test_db.sqlite3* .run

.PHONY: chaos

# Chaos run: 2 listeners, 2 workers, a private Redis and a fresh database under failures (scripts/chaos.py).
chaos: $(STAMP)
	$(PY) -m scripts.chaos
