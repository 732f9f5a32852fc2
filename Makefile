# Two set-up commands: `make run` and `make test`. Both create .venv when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PORT ?= 8888
# The JupyterLab panel: TypeScript in labextension/, built into kernel_sessions/labextension
# (Node.js >= 20.19 and npm needed from a source checkout; a wheel carries the build).
LABEXT := kernel_sessions/labextension
LABEXT_LINK := $(VENV)/share/jupyter/labextensions/kernel-sessions
LABEXT_SOURCES := $(wildcard labextension/src/* labextension/style/*) labextension/package.json \
	labextension/tsconfig.json labextension/install.json
UNLINK_LABEXT := [ ! -L $(LABEXT_LINK) ] || rm $(LABEXT_LINK)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint test-faults bench clean labextension chromium

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# The panel is built first, with npm's output in view; the editable install then finds the
# build and skips its own (silent) npm step.
$(VENV)/.installed: pyproject.toml | $(PY) $(LABEXT)/package.json
	$(UNLINK_LABEXT)
	@echo "installing kernel-sessions (with the examples' numpy, pandas, jupyter-console) into $(VENV)"
	$(PIP) install --progress-bar on -e '.[examples]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY) $(LABEXT)/package.json
	$(UNLINK_LABEXT)
	@echo "installing kernel-sessions and its test tools into $(VENV)"
	$(PIP) install --progress-bar on -e '.[test,examples]'
	touch $@ $(VENV)/.installed

# the build, then linked into the venv so that a rebuild shows without reinstalling (as
# `jupyter labextension develop` does). `npm ci` installs the lock file as it is: a build
# never rewrites a tracked file.
labextension/node_modules/.package-lock.json: labextension/package.json labextension/package-lock.json
	@echo "installing the panel's npm packages (a few minutes the first time)"
	cd labextension && npm ci --no-audit --no-fund
	touch $@

$(LABEXT)/package.json: $(LABEXT_SOURCES) labextension/node_modules/.package-lock.json
	@echo "building the JupyterLab panel"
	cd labextension && npm run build
	touch $@

labextension: $(LABEXT)/package.json
	rm -rf $(LABEXT_LINK)
	mkdir -p $(dir $(LABEXT_LINK))
	ln -s $(CURDIR)/$(LABEXT) $(LABEXT_LINK)

# the browser tests drive Debian's chromium
chromium:
	[ -x /usr/bin/chromium ] || { $(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium; }

run: $(VENV)/.installed labextension
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 --port=$(PORT) --no-browser \
		$$( [ "$$(id -u)" = 0 ] && echo --allow-root )

# static checks: ruff (lint + format) and mypy on the Python side, eslint + prettier on the panel
lint: $(VENV)/.installed-test labextension/node_modules/.package-lock.json
	$(VENV)/bin/ruff check kernel_sessions tests bench
	$(VENV)/bin/ruff format --check kernel_sessions tests bench
	cd labextension && npm run --silent lint:check

test: $(VENV)/.installed-test labextension chromium lint
	$(PY) -m pytest -q -p no:cacheprovider

# every fault test, the long race storm included (marked slow, so left out of `make test`)
test-faults: $(VENV)/.installed-test
	$(PY) -m pytest -q -p no:cacheprovider -s -m '' tests/faults

bench: $(VENV)/.installed-test
	$(PY) bench/pool.py
	$(PY) bench/variables.py
	$(PY) bench/server.py
	$(PY) bench/checkpoint.py
	$(PY) bench/client.py

clean:
	rm -rf $(VENV) build dist *.egg-info $(LABEXT) labextension/lib labextension/tsconfig.tsbuildinfo
