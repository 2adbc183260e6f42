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

run: seed
	@echo ""
	@echo "Paydesk on http://$(HOST):$(PORT)/  ·  admin: /admin/  ·  API docs: http://$(HOST):$(PORT)/api/docs/"
	@if [ "$$($(BIN)/python manage.py shell -c 'from django.conf import settings; print(int(settings.CELERY_TASK_ALWAYS_EAGER))')" = "0" ]; then \
	  echo "Broker configured: starting a Celery worker and beat alongside the server."; \
	  $(BIN)/celery -A config worker -l info & \
	  $(BIN)/celery -A config beat -l info & \
	  trap 'kill 0' EXIT INT TERM; \
	  $(BIN)/python manage.py runserver $(HOST):$(PORT); \
	else \
	  echo "No REDIS_URL/CELERY_BROKER_URL: Celery tasks run in-process (eager); no worker or beat needed."; \
	  $(BIN)/python manage.py runserver $(HOST):$(PORT); \
	fi

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
	rm -rf $(VENV) db.sqlite3
