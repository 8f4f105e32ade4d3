# Two commands set everything up on a fresh machine (Python >= 3.9 with venv):
#   make demo   -- the main job on the bundled demo cluster snapshot
#   make test   -- the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PLUGIN := $(VENV)/bin/kubectl-cpumodel
DEMO := examples/demo-cluster

.PHONY: demo test dist bench clean control-plane

$(VENV)/.installed: setup.cfg pyproject.toml requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q -e .
	touch $@

demo: $(VENV)/.installed
	$(PLUGIN) common -f $(DEMO)
	@echo
	$(PLUGIN) diff hv-01 hv-04 -f $(DEMO)
	@echo
	$(PLUGIN) why-not vm/db-1 -f $(DEMO)
	@echo
	$(PLUGIN) why-not vm/web-1 hv-01 -f $(DEMO)
	@echo
	$(PLUGIN) drain-check hv-03 -f $(DEMO)
	@echo
	$(PLUGIN) drain-check --all -f $(DEMO)
	@echo
	$(PLUGIN) audit -A -f $(DEMO)
	@echo
	$(PLUGIN) upgrade-check -f $(DEMO)
	@echo
	$(PLUGIN) what-if --remove-node hv-04 -f $(DEMO)
	@echo
	$(PLUGIN) set --cluster Skylake-Server-IBRS --dry-run=client -f $(DEMO)

# kube-apiserver, etcd and krew built from Go modules (testkit/go/), cached outside the repository per version;
# the folder holding them is the last line printed. `python -m testkit.controlplane clean` removes the cache.
control-plane: $(VENV)/.installed
	$(PY) -m testkit.controlplane build

# Without Go, the controlplane and krew tests are skipped (one line says so); under CI=true that is a failure.
test: $(VENV)/.installed
	$(PY) -m testkit.controlplane build --optional
	$(PY) -m pytest -q -n 2 --dist loadgroup

clean:
	rm -rf $(VENV) build dist man *.egg-info

dist: $(VENV)/.installed
	$(PY) tools/build_dist.py

bench: $(VENV)/.installed
	$(PY) benchmarks/run.py
