"""The benchmark suite's fixtures: every workload runs on every engine present.

    python -m pytest bench/ --benchmark-group-by=group            # full sizes (a few minutes)
    MGF_BENCH_SIZE=smoke python -m pytest bench/ --benchmark-disable   # seconds: CI's smoke run

Engines are parametrized with readable ids ([fast], [reference], [micrograd], [micrograd-gcoff],
[torch]); an engine that is not installed is skipped, and so is a workload that cannot run on
an engine here (a missing optional package, an API not there yet: the skip says which). After
the run a summary prints each workload in its own unit (ns/op, ns/leaf, ns/node, µs/loop,
ms/step, B/node, nodes ...) and the ratios between engines.
"""
import os

import pytest

from micrograd_fast import benchmark as mb

# best-of-N rounds per engine at the real sizes; upstream micrograd with gc on takes ~1 s per
# demo step and torch scalars several microseconds per op, so they get few rounds
ROUNDS = {"fast": 20, "reference": 5, "micrograd": 3, "micrograd-gcoff": 3, "torch": 3}
WARMUP = {"fast": 2, "reference": 1, "torch": 1}  # torch: first calls warm its dispatcher


def pytest_addoption(parser):
    parser.addoption("--bench-size", choices=sorted(mb.SIZES), default=None,
                     help=f"workload sizes (default: ${mb.SIZE_ENV} or 'full'); "
                     "smoke runs everything in seconds")


@pytest.fixture(scope="session")
def bench_size(request):
    """The size name: --bench-size, else $MGF_BENCH_SIZE, else 'full'."""
    size = request.config.getoption("--bench-size") or os.environ.get(mb.SIZE_ENV) or "full"
    if size not in mb.SIZES:
        raise pytest.UsageError(f"{mb.SIZE_ENV}={size!r}: choose from {', '.join(mb.SIZES)}")
    return size


@pytest.fixture(scope="session")
def sizes(bench_size):
    return mb.SIZES[bench_size]


_engines = {}


@pytest.fixture(params=mb.ENGINES, scope="session")
def bench_engine(request):
    """One engine (see micrograd_fast.benchmark.load_engine); skipped when not installed."""
    name = request.param
    if name not in _engines:
        try:
            _engines[name] = mb.load_engine(name)
        except mb.EngineUnavailable as exc:
            _engines[name] = exc
    engine = _engines[name]
    if isinstance(engine, mb.EngineUnavailable):
        pytest.skip(str(engine))
    return engine


@pytest.fixture
def make_case(bench_engine, sizes, record_skip):
    """make_case(workload): this engine's Case of the workload; the test is skipped (and the
    summary says why) when the workload cannot run on this engine here."""

    def make(workload):
        try:
            return mb.make_case(workload, bench_engine, sizes)
        except mb.WorkloadUnavailable as exc:
            record_skip(workload, bench_engine.name, str(exc))
            pytest.skip(f"{workload} on {bench_engine.name}: {exc}")

    return make


@pytest.fixture
def run_case(benchmark, bench_size, record_result, sizes):
    """Time a Case with benchmark.pedantic (setup untimed, one run per round) and record its
    per-unit best and median in extra_info and in the summary. Returns case.check(), having
    asserted that the engine computed what the workload must (mb.wrong_results)."""

    def run(case):
        name = case.engine.name
        rounds = 1 if bench_size == "smoke" else ROUNDS[name]
        warmup = 0 if bench_size == "smoke" else WARMUP.get(name, 0)
        benchmark.group = case.workload
        benchmark.extra_info.update(case.extra, engine=name, count=case.count, unit=case.unit)
        # frozen_heap: earlier tests' garbage is collected, and pytest's and torch's objects are
        # hidden from the collector, which upstream micrograd's gc-on column would otherwise pay for
        with mb.frozen_heap():
            benchmark.pedantic(case.run, setup=case.setup, rounds=rounds, warmup_rounds=warmup,
                               iterations=1)
        result = case.check()
        if result.get("second_step_loss", 0.0) is None:  # one round (smoke, or disabled): a
            case.setup()  # second one, untimed, so the step is checked after its first update
            case.run()
            result = case.check()
        case.release()
        # what the engine computed, before its timings count
        assert mb.wrong_results(case.workload, result, sizes) == []
        stats = getattr(benchmark, "stats", None)  # None when --benchmark-disable
        if stats is not None:
            best, median = case.per_unit(stats.stats.min), case.per_unit(stats.stats.median)
            benchmark.extra_info.update(best=best, median=median)
            record_result(case.workload, name, best, median, case.extra, case.count)
        return result

    return run


# ---- the summary: each workload in its own unit, ratios between engines ----

_results = {}  # workload -> engine -> {"best", "median", "runs", "extra"}


@pytest.fixture(scope="session")
def record_result():
    """record_result(workload, engine, best, median, extra): one line of the closing summary."""

    def record(workload, engine, best, median, extra=None, count=None):
        entry = _results.setdefault(workload, dict(unit=mb.UNITS[workload], engines={}))
        entry["engines"][engine] = dict(best=best, median=median, runs=[best],
                                        extra=dict(extra or {}))
        if count is not None:
            entry["engines"][engine]["count"] = count

    return record


@pytest.fixture(scope="session")
def record_skip():
    """record_skip(workload, engine, reason): an n/a line of the closing summary."""

    def record(workload, engine, reason):
        entry = _results.setdefault(workload, dict(unit=mb.UNITS[workload], engines={}))
        entry.setdefault("skipped", {})[engine] = reason

    return record


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables
def pytest_terminal_summary(terminalreporter, config):
    if not _results:
        return
    results = {}
    for workload in mb.WORKLOADS:  # the table in the usual workload order
        if workload in _results:
            results[workload] = _results[workload]
            mb.add_ratios(results[workload])
    engines = {name: dict(available=not isinstance(e, Exception),
                          version=getattr(e, "version", None), reason=str(e))
               for name, e in _engines.items()}
    report = dict(machine=mb.machine_info(), engines=engines, results=results,
                  settings=dict(size=config.getoption("--bench-size")
                                or os.environ.get(mb.SIZE_ENV) or "full"))
    terminalreporter.write_sep("-", "micrograd_fast benchmark summary (per unit)")
    terminalreporter.write_line(mb.format_table(report))
