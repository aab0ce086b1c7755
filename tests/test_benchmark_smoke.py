"""The benchmark code at tiny sizes, so it never rots: `python -m micrograd_fast bench` and the
pytest-benchmark suite in bench/. Structure and values only -- no speed thresholds anywhere."""
import gc
import json
import math
import os
import platform
import random
import re
import subprocess
import sys
import types

import pytest

from micrograd_fast import benchmark as mb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PURE = os.environ.get("MICROGRAD_FAST_PURE_PYTHON", "") not in ("", "0")


@pytest.fixture(scope="module")
def report():
    """Every workload on every engine present, at smoke size (seconds)."""
    return mb.run_all(mb.ENGINES, size="smoke")


@pytest.fixture(scope="module")
def present(report):
    return [name for name, info in report["engines"].items() if info["available"]]


# ---- the results of a full (smoke-size) run ----


@pytest.mark.slow
def test_report_has_every_workload_for_every_present_engine(report, present):
    assert set(report) >= {"machine", "settings", "engines", "results", "backend"}
    assert list(report["results"]) == list(mb.WORKLOADS)
    # ours are always there (the compiled one may be missing only in pure-Python mode)
    assert {"reference"} | (set() if PURE else {"fast"}) <= set(present)
    for workload, entry in report["results"].items():
        assert entry["unit"] == mb.UNITS[workload]
        assert list(entry["engines"]) == present, workload
        for name, result in entry["engines"].items():
            assert set(result) >= {"best", "median", "runs", "ratios", "extra"}
            assert result["runs"] and result["best"] == min(result["runs"])
            if workload == "deepest-chain":
                assert result["best"] in (0, 10**3), name  # smoke size tries 10^3 only
            else:
                assert result["best"] > 0 and math.isfinite(result["best"]), (workload, name)
                assert result["median"] >= result["best"]


@pytest.mark.slow
def test_ratios_are_quotients_of_the_best_times(report, present):
    baselines = [b for b in mb.BASELINES if b in present]
    for workload, entry in report["results"].items():
        engines = entry["engines"]
        for name, result in engines.items():
            if workload == "deepest-chain":
                assert result["ratios"] == {}
                continue
            assert sorted(result["ratios"]) == sorted(baselines)
            for base, ratio in result["ratios"].items():
                assert ratio == engines[base]["best"] / result["best"]
                if base == name:
                    assert ratio == 1.0


@pytest.mark.slow
def test_workloads_computed_the_right_numbers(report):
    steps = report["settings"]["sizes"]["binop_steps"]
    for name, result in report["results"]["binary-op"]["engines"].items():
        assert math.isclose(result["extra"]["data"], mb.binary_op_expected(steps),
                            rel_tol=1e-12), name
        assert result["extra"]["steps"] == steps
    for name, result in report["results"]["backward"]["engines"].items():
        assert result["extra"]["leaf_grads"] == [1.0], name
    for name, result in report["results"]["demo-step"]["engines"].items():
        assert result["extra"]["parameters"] == 337, name
        assert math.isfinite(result["extra"]["last_loss"]), name
    for name, result in report["results"]["memory"]["engines"].items():
        extra = result["extra"]
        assert extra["method"] == ("tracemalloc" if name in mb.PYTHON_ENGINES else "rss"), name
        assert result["best"] == extra["bytes_per_node"]
    # graphs of any depth: our engines pass every depth tried, without errors
    for name in ("fast", "reference"):
        if name not in report["results"]["deepest-chain"]["engines"]:
            continue  # the compiled engine, not built, in pure-Python mode
        chain = report["results"]["deepest-chain"]["engines"][name]
        assert chain["best"] == 10**3
        assert all(status.startswith("ok") for status in chain["extra"]["attempts"].values())


@pytest.mark.slow
def test_report_is_json_and_names_the_machine(report, tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(report))
    loaded = json.loads(path.read_text())
    assert loaded["results"]["binary-op"]["unit"] == "ns/op"
    machine = loaded["machine"]
    assert machine["python"] == platform.python_version()
    assert isinstance(machine["cores"], int) and machine["cores"] >= 1
    assert isinstance(machine["cpu"], str) and machine["cpu"]


@pytest.mark.slow
def test_table_shows_every_workload_and_engine(report, present):
    table = mb.format_table(report)
    assert report["machine"]["cpu"] in table
    for workload in mb.WORKLOADS:
        assert workload in table
    for name in present:
        assert re.search(rf"^binary-op\s+ns/op\s+{re.escape(name)}\s", table, re.M), name
    assert table.count("\n") > 5 * len(present)  # one row per workload and engine


@pytest.mark.slow
def test_plot_of_the_ratios(report, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "ratios.png"
    mb.plot_ratios(report, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- the command line ----


def test_cli_runs_selected_engines_and_writes_json(tmp_path, capsys):
    if "fast" not in mb.available_engines(["fast"])[0]:
        pytest.skip("compiled engine not built (pure-Python mode)")
    path = tmp_path / "out.json"
    rc = mb.main(["--size", "smoke", "--engines", "fast,reference", "--workloads", "binary-op",
                  "demo-step", "--json", str(path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "vs reference" in out and "vs micrograd-gcoff" in out
    data = json.loads(path.read_text())
    assert list(data["results"]) == ["binary-op", "demo-step"]
    for entry in data["results"].values():
        assert list(entry["engines"]) == ["fast", "reference"]
        fast, ref = entry["engines"]["fast"], entry["engines"]["reference"]
        assert fast["ratios"]["reference"] == ref["best"] / fast["best"]
        assert ref["ratios"] == {"reference": 1.0}


def test_cli_rejects_unknown_names(capsys):
    with pytest.raises(SystemExit) as exc:
        mb.main(["--engines", "numpy"])
    assert exc.value.code == 2
    assert "unknown engine 'numpy'" in capsys.readouterr().err


def test_cli_through_package_main():
    """`python -m micrograd_fast bench --help` reaches this module's parser."""
    proc = subprocess.run([sys.executable, "-m", "micrograd_fast", "bench", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout and "--json" in proc.stdout and "--engines" in proc.stdout


# ---- the pieces ----


def test_per_unit_conversion():
    engine = mb.load_engine("reference")
    case = mb.make_case("binary-op", engine, "smoke")
    steps = mb.SIZES["smoke"]["binop_steps"]
    assert case.count == 2 * steps and case.unit == "ns/op"
    assert case.per_unit(1.0) == 1e9 / (2 * steps)
    demo_case = mb.make_case("demo-step", engine, "smoke", verify=False)
    assert demo_case.count == 1 and demo_case.per_unit(0.25) == 250.0


def test_gc_off_engine_times_with_the_collector_off():
    seen = []
    engine = types.SimpleNamespace(name="fake", gc_off=True)
    case = mb.Case("binary-op", engine, 1, setup=lambda: seen.append(("setup", gc.isenabled())),
                   run=lambda: seen.append(("run", gc.isenabled())))
    assert gc.isenabled()
    case.setup()
    case.run()
    assert seen == [("setup", True), ("run", False)]
    assert gc.isenabled()  # restored after the timed region


def test_frozen_heap_hides_existing_objects_from_the_collector():
    gc.unfreeze()
    keep = [[i] for i in range(100)]  # noqa: F841 -- alive while frozen
    with mb.frozen_heap():
        assert gc.get_freeze_count() >= 100
    assert gc.get_freeze_count() == 0


def test_backward_graph_has_the_closed_form_gradients():
    engine = mb.load_engine("reference")
    out, leaves, h, nodes = mb.build_backward_graph(engine, width=7, layers=3)
    assert nodes == 7 + 1 + 2 * 7 * 3 + 6
    out.backward()
    assert {v.grad for v in leaves} == {1.0}
    total = sum(v.data for v in leaves)
    assert math.isclose(out.data, total, rel_tol=1e-12)  # (2h)^layers * sum = sum
    assert math.isclose(h.grad, 2 * 3 * total, rel_tol=1e-12)


def test_torch_mlp_matches_micrograd():
    """The torch comparison runs micrograd's model: same weights after the same seed, same
    outputs, same gradients."""
    torch = pytest.importorskip("torch")
    micrograd_nn = pytest.importorskip("micrograd.nn")
    from micrograd.engine import Value

    tnn = mb.load_engine("torch").nn
    random.seed(7)
    tmodel = tnn.MLP(2, [4, 3, 1])
    random.seed(7)
    mmodel = micrograd_nn.MLP(2, [4, 3, 1])
    assert [p.item() for p in tmodel.parameters()] == [p.data for p in mmodel.parameters()]
    x = [0.3, -1.2]
    tout = tmodel([torch.tensor(v, dtype=torch.float64) for v in x])
    mout = mmodel([Value(v) for v in x])
    assert math.isclose(tout.item(), mout.data, rel_tol=1e-12, abs_tol=1e-15)
    tout.backward()
    mout.backward()
    for tp, mp in zip(tmodel.parameters(), mmodel.parameters()):
        tgrad = 0.0 if tp.grad is None else tp.grad.item()
        assert math.isclose(tgrad, mp.grad, rel_tol=1e-12, abs_tol=1e-15)
    tmodel.zero_grad()
    assert all(p.grad is None for p in tmodel.parameters())


def test_absent_engine_is_reported_not_raised(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    present, absent = mb.available_engines(["reference", "torch"])
    assert list(present) == ["reference"]
    assert "torch" in absent["torch"]


# ---- the pytest-benchmark suite in bench/ ----


@pytest.mark.slow
def test_bench_suite_smoke_runs():
    """CI's guard against a rotting suite: bench/ at smoke size, benchmarks disabled."""
    if not os.path.isdir(os.path.join(ROOT, "bench")):
        pytest.skip("bench/ is not in this tree")
    env = dict(os.environ, **{mb.SIZE_ENV: "smoke"})
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "-q", "--benchmark-disable",
         "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) > 0, proc.stdout[-2000:]
    assert "micrograd_fast benchmark summary" in proc.stdout
