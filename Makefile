# The two commands of the README, and a few more for developers.
VENV := .venv
PYTHON := $(VENV)/bin/python

.PHONY: run test lint bootstrap clean package manifest

run: bootstrap
	$(PYTHON) -m pushaas_local.stack

# The console's tests drive Debian's chromium; make run does not need it.
test:
	@EXTRA_DEBIAN_PACKAGES=chromium scripts/bootstrap.sh
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest

lint: bootstrap
	$(PYTHON) -m ruff check .

bootstrap:
	@scripts/bootstrap.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# ---- AWS (docs/operations.md) --------------------------------------------------------
STAGE ?= prod

# The stage as one CloudFormation template + Lambda zip in build/package/; no AWS access.
package: bootstrap
	PYTHON=$(PYTHON) scripts/package.sh $(STAGE) build/package

# The Tsuru service manifest on stdout, for `tsuru service-create <(make -s manifest ...)`:
# ENDPOINT=<API URL> or STACK=<CloudFormation stack name>; the password is read from
# Secrets Manager at run time and never written to disk. Bootstrap talks on stderr here.
manifest:
	@scripts/bootstrap.sh >&2
	@$(PYTHON) -m pushaas_tools.manifest --stage $(STAGE) \
		$(if $(ENDPOINT),--endpoint $(ENDPOINT)) $(if $(STACK),--stack $(STACK))
