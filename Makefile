# Two set-up commands a newcomer needs: `make run` and `make test`. Both create .venv when it is absent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MITM_VENV := .venv-mitmproxy
MITM_STAMP := $(MITM_VENV)/.installed

.PHONY: run test bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,speedups]'
	touch $(STAMP)

# mitmproxy 11 (the last release for Python 3.11) pins h11 0.14, which httpx cannot share, so the
# mitmproxy example runs from a venv of its own that holds only mitmproxy and the rewriting core's needs.
$(MITM_STAMP): pyproject.toml
	test -x $(MITM_VENV)/bin/python || $(PYTHON) -m venv $(MITM_VENV)
	$(MITM_VENV)/bin/python -m pip install -q --disable-pip-version-check 'mitmproxy==11.0.2' selectolax tinycss2 regex
	$(MITM_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(MITM_STAMP)

# The embedded default: a self-hosted gateway and an agent in one process, exposing the app on port 3000.
# With nothing on port 3000 the tunnel still comes up, and requests get a 502 page naming the port.
run: $(STAMP)
	@echo "make run: tunnel up 3000 (gateway on http://127.0.0.1:8080; Ctrl-C stops it)"
	$(BIN)/tunnel up 3000

test: $(STAMP) $(MITM_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks
