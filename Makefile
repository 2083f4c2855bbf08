# One command each on a fresh machine: `make demo` (the main job), `make test` (the whole suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint typecheck gpu-check gpu-bench bench clean train-pack gpu-train ship-check

$(BIN)/slomo: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[torch,dev,openvino,serve,ray]"
	touch $@

setup: $(BIN)/slomo

demo: setup
	$(BIN)/python demo/run.py --out out/demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check superslomo tests benchmarks demo tools
	$(BIN)/ruff format --check superslomo tests benchmarks demo tools

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

# Training on a lent GPU (training/README.md): make the pack here on the CPU, run gpu-train there
# (no venv there: its python3 holds PyTorch, the repository goes on PYTHONPATH; the pack travels as
# the ignored folder runs/pack), then ship-check the checkpoint it wrote, here.
PACK ?= runs/pack
GPU_PY ?= python3
MINUTES ?= 9
GPU_OUT ?= $(if $(OUT),$(OUT),runs/gpu)
CKPT ?= $(GPU_OUT)/gpu_train.safetensors

train-pack: setup
	$(BIN)/python tools/make_train_pack.py --out $(PACK)

gpu-train:
	PYTHONPATH=. PYTHONUNBUFFERED=1 $(GPU_PY) tools/gpu_train.py --pack $(PACK) --out $(GPU_OUT) \
		--minutes $(MINUTES) --max-file-mib 15 $(GPU_ARGS)

ship-check: setup
	$(BIN)/python tools/ship_if_better.py $(CKPT) $(SHIP_ARGS)

clean:
	rm -rf $(VENV) out build *.egg-info
