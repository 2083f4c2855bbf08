# One command each on a fresh machine: `make demo` (the main job), `make test` (the whole suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint typecheck gpu-check gpu-bench bench clean

$(BIN)/slomo: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[torch,dev,openvino]"
	touch $@

setup: $(BIN)/slomo

demo: setup
	$(BIN)/python demo/run.py --out out/demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check superslomo tests benchmarks

typecheck: setup
	$(BIN)/python tools/typecheck_tensorrt.py

gpu-check: setup
	rm -f out/gpu-check/results.jsonl
	$(BIN)/python -m pytest -q -m gpu -rs tests; status=$$?; $(BIN)/python tools/gpu_table.py; exit $$status

gpu-bench: setup
	$(BIN)/python benchmarks/gpu_bench.py

bench: setup
	mkdir -p out/bench
	$(BIN)/slomo bench --data demo/big_buck_bunny_bird.mp4 --json out/bench/rows.json

clean:
	rm -rf $(VENV) out build *.egg-info
