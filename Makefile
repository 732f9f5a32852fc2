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

.PHONY: run test bench clean labextension chromium

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(UNLINK_LABEXT)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(UNLINK_LABEXT)
	$(PIP) install -q -e '.[test]'
	touch $@ $(VENV)/.installed

# the build (the editable install runs it too), then linked into the venv so that a rebuild
# shows without reinstalling (as `jupyter labextension develop` does)
labextension/node_modules/.package-lock.json: labextension/package.json
	cd labextension && npm install --no-audit --no-fund
	touch $@

$(LABEXT)/package.json: $(LABEXT_SOURCES) labextension/node_modules/.package-lock.json
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

test: $(VENV)/.installed-test labextension chromium
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(VENV)/.installed-test
	$(PY) bench/pool.py
	$(PY) bench/variables.py
	$(PY) bench/server.py
	$(PY) bench/checkpoint.py
	$(PY) bench/client.py

clean:
	rm -rf $(VENV) build dist *.egg-info $(LABEXT) labextension/lib labextension/tsconfig.tsbuildinfo
