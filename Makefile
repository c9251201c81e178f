# Blink's commands. The two the README promises: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest worker beat migrate seed system-deps test-services clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet ".[dev]"
	touch $(STAMP)

## run: the embedded trial on http://127.0.0.1:8000 (SQLite, no broker, outbox)
run: export DEBUG ?= true
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver 127.0.0.1:8000

## test: ruff, mypy and pytest, with the Debian packages and the servers the tests need
# The tests run against real servers: this machine's PostgreSQL and Redis unless
# DATABASE_URL and REDIS_URL name others.
test pytest: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/blink
test pytest: export REDIS_URL ?= redis://127.0.0.1:6379/0
test: $(STAMP) system-deps test-services
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/python manage.py makemigrations --check --dry-run --settings=tests.settings
	$(BIN)/pytest

system-deps:
	sh scripts/install-system-deps.sh

test-services:
	sh scripts/test-services.sh

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy .

pytest: $(STAMP) test-services
	$(BIN)/pytest

## worker / beat: Celery on Redis (REDIS_URL must be set)
worker: $(STAMP)
	$(BIN)/celery -A blink worker --loglevel=INFO -Q default,directory,sms

beat: $(STAMP)
	$(BIN)/celery -A blink beat --loglevel=INFO --schedule=var/celerybeat-schedule

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput

clean:
	rm -rf $(VENV)
