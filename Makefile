# Thin aliases; everything real lives in pyproject.toml and the apicrud command.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test check routes bench clean ui audit

run: $(VENV)/.installed  ## set up and run the service on the embedded defaults
	$(VENV)/bin/apicrud serve

test: $(VENV)/.installed  ## set up and run the tests (embedded SQLite + Redis unless configured)
	$(PY) -m pytest

# bandit (also run by the tests) and pip-audit, installed on demand. pip-audit needs a
# vulnerability database: PyPI's JSON API (default) or OSV (AUDIT_FLAGS=
# "--vulnerability-service osv"); --strict fails when it cannot reach one rather than
# reporting "no known vulnerabilities" for dependencies it could not check.
AUDIT_FLAGS ?=
audit: $(VENV)/.installed  ## security scans: bandit on apicrud/, pip-audit on the venv
	$(PY) -m bandit -r apicrud -c pyproject.toml -q
	$(PY) -m pip_audit --version >/dev/null 2>&1 || $(PY) -m pip install -q pip-audit
	$(PY) -m pip_audit --strict --skip-editable $(AUDIT_FLAGS)

check: $(VENV)/.installed
	$(VENV)/bin/apicrud check

routes: $(VENV)/.installed
	$(VENV)/bin/apicrud routes

bench: $(VENV)/.installed  ## apicrud vs a hand-written baseline under wrk (SQLite and PostgreSQL); BENCH_ARGS=--tiny: smoke run
	$(PY) bench/crud.py $(BENCH_ARGS)

ui:  ## rebuild the admin UI bundle (apicrud/admin_ui/dist, committed) from ui/; needs Node and npm
	cd ui && npm ci && npm run build

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) data .pytest_cache
