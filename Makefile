# candlecast: `make demo` and `make test` set up everything they need on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA_LIBS := .cache/kafka/libs
KAFKA_STAMP := $(KAFKA_LIBS)/.fetched
PYTEST_ARGS ?=

.PHONY: help demo test check lint typecheck unit kafka-jars kafka-up kafka-down system-deps bench docs soak clean

help:
	@echo "make demo        real candles through a local Kafka and the bundled ensemble; signals and metrics"
	@echo "make test        install what the tests need, then ruff, mypy and the whole test suite"
	@echo "make kafka-up    start a development broker on 127.0.0.1:9092 (make kafka-down stops it)"
	@echo "make bench       the benchmark (docs/benchmarks.md)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[train,tracking,dev]'
	touch $@

$(KAFKA_STAMP): deploy/kafka/pom.xml
	mvn -B -q -f deploy/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS)
	touch $@

kafka-jars: $(KAFKA_STAMP)

# Mosquitto and Prometheus (with promtool) for the MQTT and monitoring tests, from Debian's packages.
system-deps:
	@missing=""; \
	for tool in mosquitto:mosquitto prometheus:prometheus promtool:prometheus; do \
	  command -v $${tool%%:*} >/dev/null || [ -x /usr/sbin/$${tool%%:*} ] || missing="$$missing $${tool##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

demo: $(STAMP) $(KAFKA_STAMP)
	$(BIN)/candlecast demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not kafka and not mqtt and not prometheus and not slow" $(PYTEST_ARGS)

# pytest exits 5 when a selection (PYTEST_ARGS=-k ...) matches no test: report it, do not fail on it.
test: $(STAMP) $(KAFKA_STAMP) system-deps lint typecheck
	@set +e; $(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no test matched the selection"; exit 0; fi; exit $$rc

check: lint typecheck unit

kafka-up: $(STAMP) $(KAFKA_STAMP)
	$(BIN)/candlecast kafka up

kafka-down: $(STAMP)
	$(BIN)/candlecast kafka down

bench: $(STAMP) $(KAFKA_STAMP)
	$(BIN)/candlecast bench

# Regenerate what docs/ derives from code: the settings reference, the API's OpenAPI document, the JSON Schemas,
# the dashboard.
docs: $(STAMP)
	$(BIN)/python -c 'from pathlib import Path; from daemon.settings_reference import write_reference; write_reference(Path("docs/configuration.md"))'
	$(BIN)/python -c 'from pathlib import Path; from daemon.http import write_openapi; write_openapi(Path("docs/openapi.json"))'
	$(BIN)/candlecast schemas
	$(BIN)/python deploy/grafana/dashboard.py

# A longer kill test than the suite's 5 kills, and the chaos test with FAULTS (at least 20) faults on a
# 3-node cluster instead of the suite's 4 (docs/reliability.md).
soak: $(STAMP) $(KAFKA_STAMP)
	CANDLECAST_SOAK_KILLS=$${KILLS:-40} CANDLECAST_SOAK_RATE=$${RATE:-40} $(BIN)/pytest tests/reliability/test_kill_restart.py -p no:cacheprovider
	CANDLECAST_CHAOS_FAULTS=$${FAULTS:-24} CANDLECAST_CHAOS_RATE=$${CHAOS_RATE:-12} $(BIN)/pytest tests/reliability/test_chaos.py -p no:cacheprovider -s

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache .hypothesis
