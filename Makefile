# The two commands: `make demo` runs the built-in tiny pipeline, `make test` runs the test suite.
# Both create .venv on first use, installing torch 2.13.0 first so nothing can replace it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.llmpipe-installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Applied to every pip call, including isolated build environments of source packages.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: demo test venv clean docs bench

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	# compat: the checkout itself goes on sys.path, so Hydra can discover hydra_plugins/ from it
	DS_BUILD_OPS=0 $(PY) -m pip install -q -e '.[test,methods,export,distributed,trackers,ui,multimodal,ray]' --config-settings editable_mode=compat
	# SwanLab (train.report_to=swanlab): every release pins protobuf<7, but gptqmodel (export extra) needs
	# protobuf>=7.34. SwanLab 0.10.3 imports and logs with protobuf 7 (tests/unit/training/test_swanlab.py), so it
	# goes in without its pins (pip check reports that one pin), and its own dependencies beside it.
	$(PY) -m pip install -q -c constraints.txt click nvidia-ml-py orjson platformdirs psutil pwinput pydantic-settings \
		'pydantic~=2.0' pyecharts 'pyroaring>=1.0.0,<1.0.4' pyyaml requests rich urllib3 watchdog 'wrapt>=1.17.0'
	$(PY) -m pip install -q --no-deps swanlab==0.10.3
	# An editable install leaves llmpipe's ~190 modules uncompiled, and where PYTHONDONTWRITEBYTECODE is set (this
	# machine sets it) every run would compile them again: ~0.1-1 CPU s per process, more than a rejected config's
	# whole pre-flight. A wheel install compiles them; so does this. Python ignores a module's byte-code once its
	# source changes, so editing the checkout stays safe (only slower until the next compile).
	$(PY) -m compileall -q llmpipe hydra_plugins >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m llmpipe +recipe=demo

# Two workers (pytest-xdist): many tests wait on subprocesses and I/O. Measured on this 2-core machine:
# 18 min 22 s to 21 min 49 s for 3,754 tests in three runs on 2026-12-07 (37-42 CPU-minutes), then 28 min 6 s and
# 17 min 34 s for 3,766 tests the same morning (53 and 33 CPU-minutes): the machine's speed moves more than the
# suite does, and the suite is at the 20-minute limit, not safely under it. Fresh clones (.ci/run) that afternoon:
# 23 min 7 s (other tests running beside it) and 18 min 4 s for 3,780 tests (34.5 CPU-minutes). `make test PYTEST_WORKERS=0` runs it in
# one process.
# --dist loadgroup: a test file whose tests share a module fixture (a trained store, a sweep) runs on one worker, so
# the fixture is built once (tests/conftest.py groups those files); every other test is handed out on its own, so
# neither worker waits at the end on a long file of independent tests.
# One torch thread per process (unless OMP_NUM_THREADS is set): two workers on two cores, each running tiny models,
# only lose time to each other's thread pools (a 2-thread pool spins while the other worker holds the core).
# Byte-code is written even where PYTHONDONTWRITEBYTECODE is set: every CLI subprocess (hundreds) would compile
# llmpipe's ~190 modules again (~1 CPU s each) and each worker would rewrite the test modules' asserts (~10 s).
PYTEST_WORKERS ?= 2
test: $(STAMP)
	PYTHONDONTWRITEBYTECODE= OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# `make bench BENCH_ARGS="--quick"`: llmpipe vs LLaMA-Factory (docs/bench.md); LF gets its own venv in bench/.lfvenv
$(VENV)/.llmpipe-bench: $(STAMP)
	DS_BUILD_OPS=0 $(PY) -m pip install -q -e '.[bench]' --config-settings editable_mode=compat
	touch $@

bench: $(VENV)/.llmpipe-bench
	$(PY) -m compileall -q llmpipe hydra_plugins >/dev/null && $(PY) -m compileall -q -l bench >/dev/null   # current byte-code, as LF's installed wheel has (-l: not bench/.lfvenv)
	$(PY) -m bench $(BENCH_ARGS)

docs: $(STAMP)
	$(PY) -m llmpipe.tools.cli docs --write

clean:
	rm -rf $(VENV) .llmpipe outputs multirun build *.egg-info

# The GPU check (docs/gpu.md): `make gpu-wheels` here (network; writes .whl/, the packages the GPU machine lacks),
# then `make gpu-check` on the GPU machine (no network, no .venv: installs .whl/ into /tmp/site, results in $OUT)
.PHONY: gpu-wheels gpu-check
gpu-wheels: $(STAMP)
	$(PY) -m bench.gpu_wheels

gpu-check:
	bash bench/gpu_check.sh
