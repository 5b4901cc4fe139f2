# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ROOT := $(CURDIR)

# Airflow for the demo and the UI lives under .demo/ (SQLite); the tests make their own.
AIRFLOW_ENV := AIRFLOW_HOME=$(ROOT)/.demo/airflow \
	AIRFLOW__CORE__DAGS_FOLDER=$(ROOT)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(ROOT)/plugins \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__CORE__PARALLELISM=4 \
	AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False \
	PATH=$(ROOT)/$(VENV)/bin:$$PATH

.PHONY: venv demo airflow test lint bench soak scale stop clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

venv: $(VENV)/.installed

demo: venv
	@mkdir -p .demo/airflow
	$(AIRFLOW_ENV) $(PY) -m scripts.demo

airflow: venv
	@mkdir -p .demo/airflow
	$(AIRFLOW_ENV) $(PY) -m scripts.demo prepare
	$(AIRFLOW_ENV) airflow standalone

test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

# Benchmarks and the soak are measurements, not tests: minutes long, results printed and written as JSON.
BENCH_REPEAT ?= 1
bench: venv
	$(PY) -m scripts.bench_matching --json bench-results/matching.json
	$(PY) -m scripts.bench --repeat $(BENCH_REPEAT)
	$(PY) -m scripts.bench_webhooks --json bench-results/webhooks.json

soak: venv
	$(PY) -m scripts.soak

# CeleryExecutor with two workers on PostgreSQL + the local Redis, a 10,000-invoice backfill next to the
# scheduled syncs, checked and timed, then again with one worker: make scale [SCALE_ARGS="--invoices 2000"]
scale: venv
	$(PY) -m scripts.scale $(SCALE_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Copy the sync state between databases, e.g. SQLite to PostgreSQL: make state-copy FROM=sqlite:///... TO=postgresql+psycopg://...
# (FORCE=1 replaces a target that already holds state). Pause the DAGs first.
.PHONY: state-copy
state-copy: venv
	@test -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make state-copy FROM=<state DB URL> TO=<state DB URL> [FORCE=1]"; exit 2; }
	@$(PY) -m scripts.state_copy --from '$(FROM)' --to '$(TO)' $(if $(FORCE),--force)

stop: venv
	@$(AIRFLOW_ENV) $(PY) -m scripts.demo stop

clean: stop
	rm -rf .demo
