# Fresh-machine entry points: `make demo` and `make test` create/refresh the virtualenv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-all bench proto clean-venv render-deps

# (Re)install whenever pyproject.toml changes. pip prints one line per package, so this is quiet but not silent.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install --progress-bar off -e ".[dev]" 2>&1 | grep -v -E "^(WARNING: Location|Requirement already satisfied)"; test $${PIPESTATUS[0]} -eq 0
	@touch $(STAMP)

SHELL := /bin/bash

# Mesa lavapipe + Vulkan loader so SAPIEN can render on CPU machines (idempotent; root + apt only, ~7 s).
render-deps:
	bash envs/setup_rendering.sh

demo: $(STAMP) render-deps
	$(VENV)/bin/vlmrl demo

# CI runs exactly this (see .ci/run). Slow, GPU and vLLM tests are excluded; run them with `make test-all`.
test: $(STAMP)
	$(PY) -m pytest -m "not slow and not gpu" -q

test-all: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks.reward_service

proto: $(STAMP)
	$(PY) -m vlmrl.reward_workers.proto.generate

clean-venv:
	rm -rf $(VENV)
