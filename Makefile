# Watchfloor: one command per job. `make demo` and `make test` work on a fresh machine.
PY := .venv/bin/python

.PHONY: setup demo demo-cluster test lint bench down

setup: .venv/.installed

.venv/.installed: pyproject.toml infra/setup.sh
	@bash infra/setup.sh
	@touch $@

## stack up, worker, a replay of real data (or the simulator), and where to look
demo: setup
	$(PY) -m infra.demo

## the same on a cluster on this machine: three Kafka brokers, Redis with a replica and Sentinels, two workers, two gateways
demo-cluster: setup
	$(PY) -m infra.demo --cluster

## lint, then the whole test suite against the real Kafka and Redis (started and stopped by the suite)
test: setup lint
	$(PY) -m pytest --durations=30

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

## every performance figure in one run (throughput and peers, latency, backfill, memory): a table and out/bench/all.json
bench: setup
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m infra.stack up
	$(PY) bench/all.py

## stop the demo gateway and worker, Kafka and Redis
down:
	-$(PY) -m infra.demo stop
	$(PY) -m infra.stack down
