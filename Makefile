# The two commands of the README, and a few more for developers.
VENV := .venv
PYTHON := $(VENV)/bin/python

.PHONY: run test lint bootstrap clean package manifest soak bench

run: bootstrap
	$(PYTHON) -m pushaas_local.stack

# The console's tests drive Debian's chromium and the bench smoke runs wrk; make run needs
# neither.
test:
	@EXTRA_DEBIAN_PACKAGES="chromium wrk" scripts/bootstrap.sh
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest

lint: bootstrap
	$(PYTHON) -m ruff check .

# Minutes of the whole local stack under load (docs/reliability.md); not part of test.
# SOAK_SECONDS, SOAK_RATE, SOAK_SUBSCRIBERS, SOAK_CHANNELS change the run.
soak: bootstrap
	$(PYTHON) scripts/soak.py --output .pushaas/soak.json --doc docs/reliability.md

# Every benchmark against processes it starts itself, beside wrk and redis-benchmark in the
# same run; rewrites docs/benchmarks.md, docs/benchmarks.json and docs/bench-*.png. A few
# minutes; not part of test (make test runs tests/test_bench_smoke.py, tiny sizes).
bench:
	@EXTRA_DEBIAN_PACKAGES="wrk redis-tools" scripts/bootstrap.sh
	$(PYTHON) -m pushaas_bench

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
