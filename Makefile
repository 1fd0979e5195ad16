# paydesk: the two commands for a fresh machine are `make demo` and `make test`.
#
#   make test    create .venv, install, ruff check, mypy, then the whole pytest suite
#   make demo    create .venv, install, then scripts/demo.py (localstripe + gunicorn + worker)
#   make install-production   .venv with paydesk and its runtime dependencies only (requirements.lock)
#   make lock    re-resolve pyproject.toml's dependencies on PyPI into the two lock files (UPGRADE=1: newest)
#   make bench   run every bench/*.py (all of them), then list every target missed
#   make clean   remove .venv, caches, build/, the demo database and instance/outbox
#                (never instance/paydesk.sqlite3 nor the instance keys)
#
# Needs only python3 (>= 3.11), make and, for what is missing, apt (as root).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
# Steps share .venv and apt's lock: never run them side by side, even under make -j.
.NOTPARALLEL:

VENV    := .venv
# The suite runs in two processes (pytest-xdist; a test file stays on one): `make test PYTEST_ARGS=` runs it in one.
PYTEST_ARGS ?= -n 2 --dist loadfile
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
LINT_DIRS := $(wildcard admin tests bench scripts)
APT_ENV := DEBIAN_FRONTEND=noninteractive

.PHONY: test demo bench clean install install-production lint pytest browser nginx axe lock

# -- the environment -------------------------------------------------------------

# The first python >= 3.11 on PATH (PYTHON=... overrides).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)

$(BIN)/python:
	@if [ -z "$(PYTHON)" ]; then \
		echo "paydesk needs Python >= 3.11 (python3 is $$(python3 --version 2>&1 || echo missing))." >&2; exit 1; fi
	@echo "==> creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version))"
	@rm -rf $(VENV)
	@if ! $(PYTHON) -m venv $(VENV) 2>/dev/null; then \
		rm -rf $(VENV); \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			ver=$$($(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")'); \
			echo "==> $(PYTHON) cannot create a venv (no ensurepip): installing python3-venv with apt"; \
			apt-get update -qq && { $(APT_ENV) apt-get install -y -qq python$$ver-venv \
				|| $(APT_ENV) apt-get install -y -qq python3-venv; }; \
			$(PYTHON) -m venv $(VENV); \
		else \
			echo "$(PYTHON) -m venv failed: install python3-venv (sudo apt-get install python3-venv) and rerun." >&2; \
			exit 1; \
		fi; \
	fi
	@echo "==> upgrading pip and setuptools in $(VENV)"
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools

# -- locked dependencies ------------------------------------------------------------
# requirements-dev.lock (runtime + the dev extra: make install/test) and requirements.lock (runtime only:
# make install-production) pin every package with the sha256 of every file PyPI has for it, resolved for
# Python >= 3.11 on any platform (uv's universal resolution; markers pick per machine). pip installs them
# with --require-hashes, then paydesk itself without dependencies; scripts/check_deps.py then says when
# pyproject.toml asks for something the lock lacks (run `make lock`).
LOCK     := requirements.lock
DEV_LOCK := requirements-dev.lock
UV_VERSION := 0.13.8
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	--no-config --default-index https://pypi.org/simple --python $(BIN)/python --quiet \
	--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)

# Only PyPI is asked. Pins already in the lock files are kept unless UPGRADE=1; new dependencies are added.
lock: | $(BIN)/python
	@echo "==> make lock: resolving pyproject.toml on PyPI with uv $(UV_VERSION)$(if $(UPGRADE), (newest versions))"
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV_COMPILE) --extra dev -o $(DEV_LOCK)
	$(UV_COMPILE) --constraint $(DEV_LOCK) -o $(LOCK)
	@echo "==> wrote $(DEV_LOCK) and $(LOCK); \`make install\` installs from them"

# Reinstall only when pyproject.toml or the lock changes (or the venv is new).
$(STAMP): pyproject.toml $(DEV_LOCK) | $(BIN)/python
	@echo "==> installing paydesk and its locked dev dependencies ($(DEV_LOCK), hashes checked) into $(VENV)"
	$(BIN)/python -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@$(BIN)/python scripts/check_deps.py dev
	@touch $@

install: $(STAMP)

# Production: paydesk itself (not editable) and its locked runtime dependencies, no test or lint tools.
install-production: | $(BIN)/python
	@echo "==> installing paydesk (no dev extra) and $(LOCK) into $(VENV)"
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation .
	@$(BIN)/python scripts/check_deps.py
	@rm -f $(STAMP)

# Browser tests drive the system Chromium (Playwright's own download is not reachable).
browser:
	@if [ -x $(CHROMIUM) ]; then \
		echo "==> browser: $(CHROMIUM) found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "==> browser: installing Debian's chromium with apt"; \
		if ! { apt-get update -qq && $(APT_ENV) apt-get install -y -qq chromium; }; then \
			echo "!!! apt could not install chromium: BROWSER TESTS WILL BE SKIPPED" >&2; fi; \
	else \
		echo "!!! $(CHROMIUM) is missing and this is not root: BROWSER TESTS WILL BE SKIPPED" >&2; \
		echo "!!! (install it with: sudo apt-get install chromium)" >&2; \
	fi

# nginx for tests/test_deploy.py: the example deploy/nginx/paydesk.conf is checked with `nginx -t` and run in front
# of gunicorn. apt's nginx is left stopped and disabled (the tests start their own, on free ports).
nginx:
	@if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then \
		echo "==> nginx: $$(command -v nginx || echo /usr/sbin/nginx) found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "==> nginx: installing Debian's nginx with apt (for the deploy example's tests)"; \
		if { apt-get update -qq && $(APT_ENV) apt-get install -y -qq nginx; }; then \
			if [ -d /run/systemd/system ]; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi; \
		else \
			echo "!!! apt could not install nginx: THE NGINX EXAMPLE'S TESTS WILL BE SKIPPED" >&2; fi; \
	else \
		echo "!!! nginx is missing and this is not root: THE NGINX EXAMPLE'S TESTS WILL BE SKIPPED" >&2; \
		echo "!!! (install it with: sudo apt-get install nginx)" >&2; \
	fi

# axe-core (npm) for the accessibility checks in the browser tests: tests/package.json pins it.
AXE := tests/node_modules/axe-core/axe.min.js

axe: $(AXE)

$(AXE): tests/package.json tests/package-lock.json
	@if command -v npm >/dev/null; then \
		echo "==> axe-core: installing it into tests/node_modules from the npm registry"; \
		npm ci --prefix tests --no-audit --no-fund --loglevel=error && touch $(AXE) \
			|| echo "!!! npm could not install axe-core: ACCESSIBILITY TESTS WILL BE SKIPPED" >&2; \
	else \
		echo "!!! npm is missing: the accessibility (axe-core) browser tests will be skipped" >&2; \
		echo "!!! (install it with: sudo apt-get install npm)" >&2; \
	fi

# -- the commands ------------------------------------------------------------------

# mypy checks admin/ as pyproject.toml's [tool.mypy] says; a type error fails `make test` like a lint error.
lint: $(STAMP)
	@echo "==> ruff check $(LINT_DIRS)"
	$(BIN)/ruff check $(LINT_DIRS)
	@echo "==> ruff format --check $(LINT_DIRS)"
	@$(BIN)/ruff format --check $(LINT_DIRS) || { \
		echo "!!! some files are not formatted (listed above): run \`$(BIN)/ruff format $(LINT_DIRS)\`" >&2; \
		exit 1; }
	@echo "==> mypy (admin/, configured in pyproject.toml)"
	@$(BIN)/python -m mypy || { \
		echo "!!! mypy found type errors (listed above): fix them, then check again with \`$(BIN)/python -m mypy\`" >&2; \
		exit 1; }

# pytest exit 5 means it collected no tests: a broken suite, and said so.
pytest: $(STAMP)
	@echo "==> pytest"
	@rc=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "!!! pytest collected no tests: that is a failure here" >&2; fi; \
	exit $$rc

test: $(STAMP) browser nginx axe lint pytest

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# Every benchmark runs, whichever misses a target (a loaded machine makes some miss); the lines of
# those that did (their "FAIL ..." lines, or their exit status) are repeated at the end, and the exit
# status is non-zero when any missed.
BENCH_FILES ?= $(sort $(wildcard bench/*.py))

bench: $(STAMP)
	@files=($(BENCH_FILES)); \
	if [ $${#files[@]} -eq 0 ]; then echo "no bench/*.py yet"; exit 0; fi; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; missed=0; \
	for f in "$${files[@]}"; do \
		echo "==> $$f"; \
		rc=0; $(BIN)/python "$$f" | tee "$$tmp/out" || rc=$$?; \
		if [ $$rc -ge 128 ]; then echo "==> $$f interrupted" >&2; exit $$rc; fi; \
		if [ $$rc -ne 0 ]; then \
			missed=$$((missed + 1)); \
			{ echo "$$f (exit status $$rc):"; \
			  grep -E '^[[:space:]]*FAIL' "$$tmp/out" || echo "  no FAIL line: see its output above"; } >> "$$tmp/summary"; \
		fi; \
	done; \
	echo; \
	if [ $$missed -eq 0 ]; then echo "==> all $${#files[@]} benchmarks met their targets"; exit 0; fi; \
	echo "==> $$missed of $${#files[@]} benchmarks missed a target:"; cat "$$tmp/summary"; exit 1

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache test-results bench/results *.egg-info tests/node_modules build
	rm -rf instance/demo.sqlite3 instance/demo.sqlite3-wal instance/demo.sqlite3-shm instance/demo-logs
	rm -rf instance/outbox
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
