# Thin aliases; everything real lives in pyproject.toml and the apicrud command.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint check routes bench clean ui audit swagger-ui messages

run: $(VENV)/.installed  ## set up and run the service on the embedded defaults
	$(VENV)/bin/apicrud serve

test: $(VENV)/.installed  ## set up and run the tests (embedded SQLite + Redis unless configured)
	$(PY) -m pytest

# ruff (rules in pyproject.toml, [tool.ruff.lint]) and mypy ([tool.mypy]: the whole package,
# strict on apicrud.access, apicrud.crud, apicrud.db); either one's finding fails the target.
# ruff reads the package, the benchmarks, the default models, the tests, the example
# projects (their tests and revisions too) and the migrations.
LINT_PATHS := apicrud bench models tests examples migrations
lint: $(VENV)/.installed  ## ruff and mypy, no finding allowed
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy

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

# BENCH_PEERS=drf adds Django REST framework (the bench extra: pip install -e '.[bench]')
BENCH_PEERS ?=
bench: $(VENV)/.installed  ## apicrud vs hand-written baselines, peers and the floor under wrk (SQLite and PostgreSQL); BENCH_ARGS=--tiny: smoke run
	$(PY) bench/crud.py --peers "$(BENCH_PEERS)" $(BENCH_ARGS)
	$(PY) bench/cascade.py $(BENCH_ARGS)

ui:  ## rebuild the admin UI bundle (apicrud/admin_ui/dist, committed) from ui/; needs Node and npm
	cd ui && npm ci && npm run build

# Swagger UI at /api/v1/ui/: files of npm's swagger-ui-dist, committed in
# apicrud/swagger_ui/vendor (VERSION there names the pinned release). `make swagger-ui`
# refreshes them to the newest release (npm view swagger-ui-dist version), or to
# SWAGGER_UI_VERSION=5.x.y; npm checks the tarball against the registry's integrity hash.
SWAGGER_UI_VERSION ?=
SWAGGER_UI_DIR := apicrud/swagger_ui/vendor
SWAGGER_UI_FILES := swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css \
	favicon-16x16.png favicon-32x32.png LICENSE NOTICE
swagger-ui:  ## refresh the vendored Swagger UI (apicrud/swagger_ui/vendor, committed) from npm; needs npm
	@set -eu; v="$(SWAGGER_UI_VERSION)"; [ -n "$$v" ] || v=$$(npm view swagger-ui-dist version); \
	case "$$v" in 5.*) ;; *) echo "swagger-ui-dist $$v: apicrud/swagger_ui is written for 5.x" >&2; exit 1;; esac; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	(cd "$$tmp" && npm pack --silent "swagger-ui-dist@$$v" >/dev/null && tar -xzf "swagger-ui-dist-$$v.tgz"); \
	rm -rf $(SWAGGER_UI_DIR) && mkdir -p $(SWAGGER_UI_DIR); \
	for f in $(SWAGGER_UI_FILES); do cp "$$tmp/package/$$f" $(SWAGGER_UI_DIR)/; done; \
	{ printf 'swagger-ui-dist %s\nintegrity %s\nfiles (sha256):\n' "$$v" \
	    "$$(npm view "swagger-ui-dist@$$v" dist.integrity)"; \
	  (cd $(SWAGGER_UI_DIR) && sha256sum $(SWAGGER_UI_FILES)); } > $(SWAGGER_UI_DIR)/VERSION.tmp; \
	mv $(SWAGGER_UI_DIR)/VERSION.tmp $(SWAGGER_UI_DIR)/VERSION; \
	echo "swagger-ui-dist $$v -> $(SWAGGER_UI_DIR)"

# Server messages in other languages (README, Languages): extract the marked texts into
# apicrud/locale/apicrud.pot, merge them into every catalog (<lang>/LC_MESSAGES/
# apicrud.po), compile the .mo files the service reads. The .mo files are committed and
# shipped in the package; tests/unit/test_catalogs.py fails when one is stale or a text
# lacks a translation. A new language: pybabel init -D apicrud -d apicrud/locale
# -i apicrud/locale/apicrud.pot -l <lang>, translate, make messages.
BABEL_KEYWORDS := -k N_ -k NP_:1,2 -k N_as:2
messages: $(VENV)/.installed  ## extract, update and compile the message catalogs (apicrud/locale)
	$(VENV)/bin/pybabel extract -F babel.cfg $(BABEL_KEYWORDS) --no-location --sort-output \
		--project apicrud --copyright-holder "apicrud authors" -w 100 \
		-o apicrud/locale/apicrud.pot apicrud
	$(VENV)/bin/pybabel update -D apicrud -i apicrud/locale/apicrud.pot -d apicrud/locale \
		--no-fuzzy-matching --ignore-obsolete -w 100
	$(VENV)/bin/pybabel compile -D apicrud -d apicrud/locale --statistics

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lint]'
	touch $@

clean:
	rm -rf $(VENV) data .pytest_cache
