# A newcomer's two commands: `make run` and `make test`. Needs only python3 (3.11).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Links Paydesk prints and serves (mock checkout pages, the admin) point at this server.
export PUBLIC_BASE_URL ?= http://$(HOST):$(PORT)
# pytest flags; CI passes --create-db so a database left by an older checkout is never reused.
PYTEST_ARGS ?= --reuse-db

.PHONY: run test lint install install-dev migrate seed worker beat bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed

# Background work: with a broker configured, a Celery worker and beat on it; with none
# (the embedded default), one worker with beat on kombu's filesystem broker in .run/broker,
# the web server sending its tasks there too (CELERY_BROKER_URL=filesystem://), so periodic
# tasks run on their schedule with no Redis; with CELERY_TASK_ALWAYS_EAGER=1, neither.
# Whatever it started is stopped when the server stops (Ctrl-C).
run: seed
	@mode=$$($(BIN)/python manage.py runinfo) || exit 1; \
	pids=""; \
	trap 'if [ -n "$$pids" ]; then kill $$pids 2>/dev/null; wait $$pids 2>/dev/null; fi' EXIT; \
	trap 'exit 130' INT TERM; \
	case "$$mode" in \
	embedded) \
	  mkdir -p .run; \
	  export CELERY_BROKER_URL=filesystem://; \
	  $(BIN)/python manage.py embedded_worker >>.run/worker.log 2>&1 & pids="$$!"; \
	  echo "No broker configured: started a Celery worker with beat (pid $$pids) on kombu's filesystem"; \
	  echo "  broker (messages are files in $${CELERY_FILESYSTEM_BROKER_DIR:-.run/broker}; no server needed)."; \
	  echo "  Tasks go through the worker and periodic tasks (installment collection, webhook retries, ...)"; \
	  echo "  run on their schedule. Its log: .run/worker.log"; \
	  ;; \
	broker) \
	  $(BIN)/celery -A config worker -l info & pids="$$!"; \
	  $(BIN)/celery -A config beat -l info & pids="$$pids $$!"; \
	  echo "Started a Celery worker and beat (pids $$pids) on the configured broker."; \
	  ;; \
	*) \
	  echo "CELERY_TASK_ALWAYS_EAGER is on: tasks run in-process; no worker or beat, so periodic tasks do not run."; \
	  ;; \
	esac; \
	echo "Starting the web server: Paydesk on http://$(HOST):$(PORT)/  ·  admin: /admin/  ·  API docs: http://$(HOST):$(PORT)/api/docs/"; \
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

worker: install
	$(BIN)/celery -A config worker -l info

beat: install
	$(BIN)/celery -A config beat -l info

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Uses DATABASE_URL if set, else a local PostgreSQL on 127.0.0.1:5432 if one answers, else SQLite
# (PostgreSQL-only tests are then skipped and counted at the end).
test: install-dev lint
	@if [ -z "$$DATABASE_URL" ] && $(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null; then \
	  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/paydesk; \
	  echo "Testing on the local PostgreSQL (127.0.0.1:5432)."; \
	fi; \
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python manage.py bench all

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-wal db.sqlite3-shm .run
