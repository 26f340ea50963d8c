# Thin aliases; everything real lives in pyproject.toml and the apicrud command.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test check routes bench clean ui

run: $(VENV)/.installed  ## set up and run the service on the embedded defaults
	$(VENV)/bin/apicrud serve

test: $(VENV)/.installed  ## set up and run the tests (embedded SQLite + Redis unless configured)
	$(PY) -m pytest

check: $(VENV)/.installed
	$(VENV)/bin/apicrud check

routes: $(VENV)/.installed
	$(VENV)/bin/apicrud routes

ui:  ## rebuild the admin UI bundle (apicrud/admin_ui/dist, committed) from ui/; needs Node and npm
	cd ui && npm ci && npm run build

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) data .pytest_cache
