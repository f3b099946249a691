# RefRPC: one entry point for people and CI.
#   make test      create .venv, install everything, run the whole suite
#   make demo      the paper's three applications on a local cluster that starts by itself
#   make demo-sim  a narrated, deterministic simulation of the protocol core
#   make docs      build the Sphinx docs with warnings as errors
#   make bench-datapath     cross-host fetch and broadcast figures (on the multi-host test bed where it runs)
#   make simulate SEEDS=N   run N more seeded fault simulations
#   make fuzz FRAMES=N      send N fuzzed frames to a live head, worker and driver (SEED=S picks the seed)
#   make spec-index         regenerate spec/requirements.json, spec/schema-layout.* and spec/vectors/
#   make conformance        run the conformance suite against pyimpl (reports in conformance-report/)
#   make partitions RUNS=N  run N seeded partition and host-loss runs on a multi-host bed (root; SEED=S the first)
#   make bench-hosts        no-op task throughput and a MapReduce on 1, 2, 4 and 8 hosts of a test bed (root)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp-install
SEEDS  ?= 2000
FRAMES ?= 200000
RUNS   ?= 50
SEED   ?= 1

.PHONY: test demo demo-sim bench bench-hosts bench-datapath docs simulate fuzz partitions spec-index capnp chromium netfilter conformance conformance-faults clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyimpl/pyproject.toml conformance/pyproject.toml tools/trace/pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e 'pyimpl[test,docs]'
	$(PY) -m pip install --quiet -e conformance
	$(PY) -m pip install --quiet -e tools/trace
	touch $(STAMP)

# The reference Cap'n Proto compiler, used by the schema tests (Debian package capnproto).
capnp:
	@command -v capnp >/dev/null 2>&1 || { \
	  echo "installing capnproto (the capnp compiler) with apt-get"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq capnproto >/dev/null; }

# nftables and iptables, for the multi-host test bed's lossy links (nft) and slow links
# (iptables' NFQUEUE target), Debian packages nftables and iptables; if they cannot be
# installed, the tests of lossy or slow links are skipped and say why.
netfilter:
	@{ command -v nft >/dev/null 2>&1 && command -v iptables >/dev/null 2>&1; } || { \
	  echo "installing nftables and iptables with apt-get (lossy and slow links on the multi-host test bed)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nftables iptables >/dev/null; } || \
	  echo "could not install nftables and iptables: the lossy- and slow-link tests will be skipped"; }

# A headless browser for the trace inspector's HTML test (Debian packages chromium and
# chromium-driver); if it cannot be installed, that test is skipped and says why.
chromium:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  echo "installing chromium and chromium-driver with apt-get (for the trace inspector's HTML test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "could not install chromium: the HTML test of tools/trace will be skipped"; }

# One run per test directory, so that each keeps its own pytest settings (pyproject.toml).
# pyimpl's tests run in two processes (pytest-xdist), a test file's tests in one of them:
# most of them wait on real processes and sockets, so two at a time use CI's two cores.
test: $(STAMP) capnp chromium netfilter
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 pyimpl/tests
	$(PY) -m pytest -q --durations=5 conformance/tests
	$(PY) -m pytest -q tools/trace/tests

# Every pyimpl fault switch against the case that must catch it (make test runs a
# seeded slice of them; REFRPC_FAULT_SEED=N reruns a slice).
conformance-faults: $(STAMP) capnp
	REFRPC_FAULT_SWITCHES=all $(PY) -m pytest -q conformance/tests/test_pyimpl_faults.py

demo: $(STAMP)
	$(PY) -m refrpc.examples.demo

demo-sim: $(STAMP)
	$(PY) -m refrpc.testing.demo

bench: $(STAMP)
	$(PY) tools/bench/run.py
	$(PY) tools/bench/pressure.py

bench-hosts: $(STAMP)
	$(PY) -m pip install --quiet -e 'pyimpl[bench]'
	$(PY) tools/bench/scaling.py --json scaling.json --plot docs/images/scaling.png

bench-datapath: $(STAMP)
	$(PY) tools/bench/datapath.py

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

simulate: $(STAMP)
	$(PY) -m refrpc.testing --seeds $(SEEDS)

fuzz: $(STAMP)
	$(PY) -m refrpc.testing.fuzz --frames $(FRAMES) --seed $(SEED)

partitions: $(STAMP)
	$(PY) -m refrpc.testing.partitions --runs $(RUNS) --seed $(SEED)

conformance: $(STAMP)
	mkdir -p conformance-report
	$(PY) -m refrpc_conformance --iut conformance/iut/pyimpl.toml -j 2 --known-failing conformance/iut/pyimpl-known-failing.txt \
	  --json conformance-report/pyimpl.json --junit conformance-report/pyimpl.xml --html conformance-report/pyimpl.html

spec-index: $(STAMP) capnp
	$(PY) spec/tools/build_index.py
	$(PY) spec/tools/schema_layout.py
	$(PY) spec/tools/make_vectors.py

clean:
	rm -rf $(VENV) docs/_build conformance-report
