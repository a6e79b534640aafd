# The two commands of the README, and a few more for developers.
VENV := .venv
PYTHON := $(VENV)/bin/python

.PHONY: run test lint bootstrap clean

run: bootstrap
	$(PYTHON) -m pushaas_local.stack

test: bootstrap
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest

lint: bootstrap
	$(PYTHON) -m ruff check .

bootstrap:
	@scripts/bootstrap.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
