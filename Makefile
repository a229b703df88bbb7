# Compute Ledger: `make demo` and `make test` do every install step they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NPM := contracts/node_modules/.installed
# slither pins a web3 major different from the product's, so it lives in its own environment.
TOOLS_VENV := .venv-tools
STAMP_TOOLS := $(TOOLS_VENV)/.installed
SLITHER_VERSION := 0.11.6

.PHONY: install system-packages demo test compile check-artifacts bench screenshots clean

install: system-packages $(STAMP_PY) $(STAMP_NPM) $(STAMP_TOOLS)

# Debian packages the README's walkthrough (and its test) use, and the browser the web tests drive (chromium):
# apt-get update once, then install what is missing.
# postgresql: the tests start a private server (initdb + pg_ctl, found in /usr/lib/postgresql/<major>/bin).
DEB_PACKAGES := jq curl postgresql chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)
system-packages:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  case $$p in postgresql) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing="$$missing $$p";; \
	  *) command -v $$p >/dev/null || missing="$$missing $$p";; esac; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP_PY): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing Python packages into $(VENV) (pinned in pyproject.toml)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $@

$(STAMP_NPM): contracts/package.json contracts/package-lock.json
	@echo "installing contract toolchain (npm ci in contracts/)"
	@cd contracts && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMP_TOOLS): Makefile
	@test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	@echo "installing slither-analyzer $(SLITHER_VERSION) into $(TOOLS_VENV)"
	@$(TOOLS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "slither-analyzer==$(SLITHER_VERSION)"
	@touch $@

demo: install
	@$(VENV)/bin/compute-ledger demo

test: install
	@bash .ci/test

compile: install
	@$(VENV)/bin/compute-ledger compile

check-artifacts: install
	@$(VENV)/bin/compute-ledger compile --check

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# screenshots of the web market for the README (docs/img), taken in headless chromium from a live bridge
screenshots: install
	@$(PY) tools/web_screenshots.py

clean:
	rm -rf $(VENV) $(TOOLS_VENV) contracts/node_modules contracts/out contracts/cache .data
