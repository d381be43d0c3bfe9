# The README's commands. Each runs the setup script first, so a fresh machine needs nothing else.
SHELL := /bin/bash
VENV := .venv/bin
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup test test-multi lint demo down bench

setup:
	@bash scripts/setup.sh

test:
	@bash scripts/setup.sh --postgres
	$(VENV)/ruff check .
	$(VENV)/pytest -q

test-multi:
	@bash scripts/setup.sh --postgres
	$(VENV)/pytest -q tests/test_multi_machine.py

lint: setup
	$(VENV)/ruff check .

demo: setup
	$(VENV)/python -m flows.demo up

down:
	@if [ -x $(VENV)/python ]; then $(VENV)/python -m flows.demo down; else echo "nothing to stop"; fi

bench: setup
	$(VENV)/python -m bench.run
