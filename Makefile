# RefRPC: one entry point for people and CI.
#   make test      create .venv, install everything, run the whole suite
#   make demo      the paper's three applications on a local cluster that starts by itself
#   make demo-sim  a narrated, deterministic simulation of the protocol core
#   make docs      build the Sphinx docs with warnings as errors
#   make simulate SEEDS=N   run N more seeded fault simulations
#   make spec-index         regenerate spec/requirements.json from spec/*.md

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp-install
SEEDS  ?= 2000

.PHONY: test demo demo-sim bench docs simulate spec-index capnp clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyimpl/pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e 'pyimpl[test,docs]'
	touch $(STAMP)

# The reference Cap'n Proto compiler, used by the schema tests (Debian package capnproto).
capnp:
	@command -v capnp >/dev/null 2>&1 || { \
	  echo "installing capnproto (the capnp compiler) with apt-get"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq capnproto >/dev/null; }

test: $(STAMP) capnp
	$(PY) -m pytest -q pyimpl/tests

demo: $(STAMP)
	$(PY) -m refrpc.examples.demo

demo-sim: $(STAMP)
	$(PY) -m refrpc.testing.demo

bench: $(STAMP)
	$(PY) tools/bench/run.py

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

simulate: $(STAMP)
	$(PY) -m refrpc.testing --seeds $(SEEDS)

spec-index: $(STAMP)
	$(PY) spec/tools/build_index.py

clean:
	rm -rf $(VENV) docs/_build
