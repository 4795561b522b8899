# Two commands do all the set-up on a fresh machine:
#   make demo   — build the environment and run the demo study on built-in synthetic data
#   make test   — build the environment and run the test suite (what .ci/run calls)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
DEMO_OUT ?= demo_out

.PHONY: demo test env bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# torch first: the CPU build (from the local wheel cache where present) unless a GPU is visible.
$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: installing the default (CUDA) torch build"; \
		$(BIN)/python -m pip install -q "torch>=2.4"; \
	else \
		echo "no GPU: installing the CPU torch build"; \
		$(BIN)/python -m pip install -q torch==2.13.0; \
	fi
	$(BIN)/python -m pip install -q -e ".[test,serve,onnx]"
	@touch $@

env: $(VENV)/.installed

demo: env
	$(BIN)/stethoscope demo --out $(DEMO_OUT)

# lint, format check and type check first (seconds), then the suite
test: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: env
	$(BIN)/python benchmarks/bench_features.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
