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


def _imports(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _why_not(workload):
    """Why an optional workload cannot run anywhere here (None: it must run on every engine)."""
    if workload == "leaf-numpy" and not _imports("numpy"):
        return "numpy is not installed"
    if workload == "digits-step" and not _imports("sklearn.datasets"):
        return "scikit-learn does not import"
    if workload == "demo-step-replayed":
        return mb._replay_missing()
    if workload == "optimizer-step" and mb._fast_module("optim") is None:
        return "micrograd_fast.optim does not exist yet"
    return None


def _why_not_on(workload, engine):
    """Why a workload cannot run on one engine in particular (None: nothing against it)."""
    if workload == "custom-op-step" and engine == "torch":
        return "a hand-built op is not possible on torch tensors"
    if workload == "demo-step-own-nn" and engine == "torch":
        return "torch's demo-step row is micrograd's nn structure already"
    return None


@pytest.mark.slow
def test_report_has_every_workload_for_every_present_engine(report, present):
    assert set(report) >= {"machine", "settings", "engines", "results", "backend"}
    assert list(report["results"]) == list(mb.WORKLOADS)
    # ours are always there (the compiled one may be missing only in pure-Python mode)
    assert {"reference"} | (set() if PURE else {"fast"}) <= set(present)
    for workload, entry in report["results"].items():
        assert entry["unit"] == mb.UNITS[workload]
        assert "errors" not in entry, (workload, entry.get("errors"))
        reason = _why_not(workload)
        if reason is None:  # a row for every engine present, none skipped but by design
            unable = {n: _why_not_on(workload, n) for n in present if _why_not_on(workload, n)}
            assert list(entry["engines"]) == [n for n in present if n not in unable], workload
            assert entry.get("skipped", {}).keys() == unable.keys(), (workload, entry)
            assert all(unable[n] in r for n, r in entry.get("skipped", {}).items()), entry
        else:  # skipped on every engine, each with the reason
            assert entry["engines"] == {}, workload
            assert list(entry["skipped"]) == present, workload
            assert all(reason.split(" (")[0] in r for r in entry["skipped"].values()), entry
        for name, result in entry["engines"].items():
            assert set(result) >= {"best", "median", "runs", "ratios", "extra"}
            assert result["runs"] and result["best"] == min(result["runs"])
            if workload == "deepest-chain":
                assert result["best"] in (0, 10**3), name  # smoke size tries 10^3 only
            else:
                assert result["best"] > 0 and math.isfinite(result["best"]), (workload, name)
                assert result["median"] >= result["best"]
            if workload in mb.TIMED:
                assert result["count"] > 0


@pytest.mark.slow
def test_ratios_are_quotients_of_the_median_times(report, present):
    for workload, entry in report["results"].items():
        engines = entry["engines"]
        baselines = [b for b in mb.BASELINES if b in engines]
        for name, result in engines.items():
            if workload == "deepest-chain":
                assert result["ratios"] == {}
                continue
            assert sorted(result["ratios"]) == sorted(baselines)
            for base, ratio in result["ratios"].items():
                assert ratio == engines[base]["median"] / result["median"]
                if base == name:
                    assert ratio == 1.0


def _same_on_every_engine(report, workload, key, rel_tol=1e-9):
    """The number `key` that every engine's check() reported for `workload`: all equal."""
    values = {name: r["extra"][key] for name, r in report["results"][workload]["engines"].items()}
    first = next(iter(values.values()))
    for name, value in values.items():
        assert math.isclose(value, first, rel_tol=rel_tol), (workload, key, values)
    return first


@pytest.mark.slow
def test_workloads_computed_the_right_numbers(report):
    sizes = report["settings"]["sizes"]
    steps = sizes["binop_steps"]
    results = report["results"]
    for name, result in results["binary-op"]["engines"].items():
        assert math.isclose(result["extra"]["data"], mb.binary_op_expected(steps),
                            rel_tol=1e-12), name
        assert result["extra"]["steps"] == steps
    for workload in ("leaf", "leaf-map", "leaf-numpy"):
        for name, result in results[workload]["engines"].items():
            extra = result["extra"]
            assert extra["data_ok"] and extra["grads"] == [0.0], (workload, name)
            assert result["count"] == sizes["leaves"] - sizes["leaves"] % 64
    for name, result in results["backward-layered"]["engines"].items():
        assert result["extra"]["leaf_grads"] == [1.0], name
    for name, result in results["backward-tree"]["engines"].items():
        assert result["extra"]["grad_mismatches"] == 0, name
        # n leaves, n/2 + n/4 products, n/4 - 1 sums
        assert result["count"] == 2 * sizes["tree_leaves"] - 1
    for name, result in results["backward-chain"]["engines"].items():
        extra = result["extra"]
        assert extra["data"] == extra["data_expected"], name
        assert extra["b_grad"] == extra["b_grad_expected"], name
        assert math.isclose(extra["a_grad"], extra["a_grad_expected"], rel_tol=1e-12), name
        assert result["count"] > 1_000  # deeper than upstream's default recursion limit
        if name.startswith("micrograd"):
            assert "deep_thread" in extra
    for name, result in results["backward-fanout"]["engines"].items():
        extra = result["extra"]
        assert extra["w_grads"] == [extra["x_data"]], name
        assert math.isclose(extra["x_grad"], extra["x_grad_expected"], rel_tol=1e-9), name
    # the same model, the same data, the same math: the same numbers on every engine
    _same_on_every_engine(report, "backward-mlp", "loss")
    _same_on_every_engine(report, "backward-mlp", "grad_sq_sum")
    for name, result in results["demo-step"]["engines"].items():
        assert result["extra"]["parameters"] == 337, name
        assert math.isfinite(result["extra"]["last_loss"]), name
    demo_loss = _same_on_every_engine(report, "demo-step", "first_step_loss")
    assert math.isclose(demo_loss, _same_on_every_engine(report, "backward-mlp", "loss"),
                        rel_tol=1e-12)  # backward-mlp's graph is the demo's first loss
    if results["digits-step"]["engines"]:
        _same_on_every_engine(report, "digits-step", "first_step_loss")
        for name, result in results["digits-step"]["engines"].items():
            assert result["extra"]["parameters"] == 2410, name
            assert math.isfinite(result["extra"]["last_loss"]), name
    _same_on_every_engine(report, "custom-op-step", "first_step_loss", rel_tol=1e-12)
    for name, result in results["custom-op-step"]["engines"].items():
        assert result["extra"]["parameters"] == 41, name
        assert math.isfinite(result["extra"]["last_loss"]), name
    for name, result in results["param-loop"]["engines"].items():
        assert result["extra"]["parameters"] == 337, name
        assert result["extra"]["exact_mismatches"] == 0, name
    for name, result in results["zero-grad"]["engines"].items():
        assert result["extra"]["nonzero_grads"] == 0, name
    for name, result in results["teardown"]["engines"].items():
        assert result["extra"]["freed"], name
        assert result["extra"]["freed_by"] == (
            "gc.collect()" if name.startswith("micrograd") else "reference counting")
    for name, result in results["memory"]["engines"].items():
        extra = result["extra"]
        assert extra["method"] == ("tracemalloc" if name in mb.PYTHON_ENGINES else "rss"), name
        assert result["best"] == extra["bytes_per_node"]
    # graphs of any depth: our engines pass every depth tried, without errors
    for name in ("fast", "reference"):
        if name not in results["deepest-chain"]["engines"]:
            continue  # the compiled engine, not built, in pure-Python mode
        chain = results["deepest-chain"]["engines"][name]
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
    for workload, entry in report["results"].items():
        if entry["engines"]:
            for name in present:  # a row per engine: its numbers, or n/a
                assert re.search(rf"^{re.escape(workload)}\s+{re.escape(entry['unit'])}\s+"
                                 rf"{re.escape(name)}\s", table, re.M), (workload, name)
        else:  # skipped everywhere: one line with the reason
            assert re.search(rf"^{re.escape(workload)}: not run: ", table, re.M), workload
    assert "backward-chain: upstream micrograd's backward() recurses" in table


def test_table_marks_skipped_engines_and_sizes():
    report = dict(
        machine=dict(cpu="cpu", cores=1, implementation="CPython", python="3", platform="p"),
        settings=dict(size="smoke"), engines={},
        results={
            "backward-chain": dict(unit="ns/node", engines={
                "fast": dict(best=2.0, median=3.0, count=1_000_003),
                "micrograd": dict(best=800.0, median=900.0, count=100_003)},
                skipped={"torch": "torch broke"}),
            "optimizer-step": dict(unit="ns/param", engines={},
                                   skipped={"fast": "no optim", "torch": "no optim"}),
        })
    for entry in report["results"].values():
        mb.add_ratios(entry)
    table = mb.format_table(report)
    assert re.search(r"^backward-chain\s+ns/node\s+fast\s+2\s+3\s+-\s+300x", table, re.M)
    assert re.search(r"^backward-chain\s+ns/node\s+torch\s+n/a\s+n/a", table, re.M)
    assert "backward-chain on torch: n/a: torch broke" in table
    assert "backward-chain: 1,000,003 nodes for fast; 100,003 nodes for micrograd" in table
    assert "optimizer-step: not run: no optim" in table
    assert not re.search(r"^optimizer-step\s", table, re.M)


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
        assert fast["ratios"]["reference"] == ref["median"] / fast["median"]
        assert ref["ratios"] == {"reference": 1.0}


def test_cli_backward_selects_every_backward_shape(tmp_path):
    path = tmp_path / "out.json"
    assert mb.main(["--size", "smoke", "--engines", "reference", "--workloads", "backward",
                    "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert list(data["results"]) == ["backward-layered", "backward-tree", "backward-chain",
                                     "backward-fanout", "backward-mlp"]


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
    loop_case = mb.make_case("param-loop", engine, "smoke")
    assert loop_case.unit == "µs/loop" and loop_case.count == mb.SIZES["smoke"]["reps"]
    assert loop_case.per_unit(1.0) == 1e6 / loop_case.count
    mlp_case = mb.make_case("backward-mlp", engine, "smoke")
    assert mlp_case.unit == "µs/backward" and mlp_case.per_unit(0.5) == 5e5


def test_every_timed_workload_has_a_case_and_sizes():
    engine = mb.load_engine("reference")
    assert set(mb.TIMED) == set(mb.WORKLOADS) - {"memory", "deepest-chain"}
    for size in mb.SIZES:
        assert set(mb.SIZES[size]) == set(mb.SIZES["smoke"]), size
    for workload in mb.TIMED:
        try:
            case = mb.make_case(workload, engine, "smoke", verify=False)
        except mb.WorkloadUnavailable as exc:
            assert _why_not(workload) is not None, (workload, exc)
            continue
        assert case.workload == workload and case.unit == mb.UNITS[workload]
        assert case.count > 0
    with pytest.raises(ValueError, match="not a timed workload"):
        mb.make_case("memory", engine, "smoke")


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


def test_call_deep_runs_upstream_backward_past_the_recursion_limit():
    """micrograd's recursive backward() on a 5,000-deep chain: a RecursionError as users run it,
    the right gradient through call_deep, and the interpreter's limit restored afterwards."""
    micrograd_engine = pytest.importorskip("micrograd.engine")
    engine = mb.load_engine("micrograd")
    assert engine.recursive and engine.cyclic
    out, a, b, nodes = mb.build_chain_graph(engine, 2_500)
    limit = sys.getrecursionlimit()
    with pytest.raises(RecursionError):
        out.backward()
    out, a, b, nodes = mb.build_chain_graph(engine, 2_500)  # fresh: no half-done grads
    mb.call_deep(out.backward, nodes)
    assert sys.getrecursionlimit() == limit
    assert (a.grad, b.grad) == mb.chain_grads_expected(2_500)
    assert isinstance(out, micrograd_engine.Value)


def test_call_deep_reraises_in_the_caller():
    def boom():
        raise KeyError("deep")

    with pytest.raises(KeyError, match="deep"):
        mb.call_deep(boom, 10)


def test_shape_graphs_have_the_closed_form_gradients():
    engine = mb.load_engine("reference")
    out, leaves, nodes = mb.build_tree_graph(engine, 8)
    out.backward()
    data = [v.data for v in leaves]
    a, b, c, d, e, f, g, h = data
    assert out.data == a * b * (c * d) + e * f * (g * h)
    assert [v.grad for v in leaves] == mb.tree_grads_expected(data)
    out, x, ws, nodes = mb.build_fanout_graph(engine, 5)
    out.backward()
    assert nodes == 15 and [w.grad for w in ws] == [0.75] * 5
    assert math.isclose(x.grad, sum(w.data for w in ws), rel_tol=1e-12)
    out, a, b, nodes = mb.build_chain_graph(engine, 3)
    out.backward()
    # x3 = ((x0 a + b) a + b) a + b with x0 = 1, a = 0.5, b = 0.25
    assert nodes == 9 and out.data == mb.binary_op_expected(3)
    assert b.grad == 1 + 0.5 + 0.25 and a.grad == mb.chain_grads_expected(3)[0]
    # d x3 / d a = x2 + a * (x1 + a * x0), with x1 = 0.75, x2 = 0.625
    assert a.grad == 0.625 + 0.5 * (0.75 + 0.5 * 1.0) == 1.25


def test_multiclass_hinge_loss_by_hand():
    """relu(1 + s_j - s_c) summed over j != c, the batch mean, plus alpha * sum(p^2)."""
    from micrograd_fast import reference

    class Scores:  # a "model" that returns fixed scores, with one parameter
        def __init__(self, scores):
            self.scores = scores
            self.p = reference.Value(2.0)

        def __call__(self, x):
            return [reference.Value(s) for s in self.scores[int(x[0].data)]]

        def parameters(self):
            return [self.p]

    model = Scores({0: [3.0, 1.0, 2.5], 1: [0.0, 0.5, -2.0]})
    X, y = [[0.0], [1.0]], [0, 1]
    loss = mb.multiclass_hinge_loss(model, X, y, reference.Value, alpha=0.01)
    # sample 0 (label 0): relu(1 + 1 - 3) + relu(1 + 2.5 - 3) = 0 + 0.5
    # sample 1 (label 1): relu(1 + 0 - 0.5) + relu(1 - 2 - 0.5) = 0.5 + 0
    assert math.isclose(loss.data, (0.5 + 0.5) / 2 + 0.01 * 4.0, rel_tol=1e-15)


def test_digits_data_and_loss_are_the_same_on_every_engine():
    pytest.importorskip("sklearn.datasets", reason="digits-step needs scikit-learn")
    X, y = mb.load_digits_scaled()
    assert len(X) == len(y) == 1797 and len(X[0]) == 64
    assert min(min(r) for r in X) == 0.0 and max(max(r) for r in X) == 1.0
    assert set(y) == set(range(10))
    present, _ = mb.available_engines()
    losses = {}
    for name, engine in present.items():
        case = mb.make_case("digits-step", engine, "smoke")
        case.setup()
        case.run()
        losses[name] = case.check()["first_step_loss"]
        case.release()
    first = losses["reference"]
    assert all(math.isclose(v, first, rel_tol=1e-9) for v in losses.values()), losses


def test_custom_op_step_is_the_lecture_with_its_hand_built_tanh():
    """The lecture's tanh, built by hand on each engine's Value: its value and gradient are
    tanh's, every engine starts from the same loss, and torch says why it cannot run it."""
    present, _ = mb.available_engines()
    losses = {}
    for name, engine in present.items():
        if engine.kind == "torch":
            with pytest.raises(mb.WorkloadUnavailable, match="hand-built op"):
                mb.make_case("custom-op-step", engine, "smoke")
            continue
        x = engine.Value(0.4)
        out = mb.lecture_tanh(engine.Value)(x)
        assert out._op == "tanh" and math.isclose(out.data, math.tanh(0.4), rel_tol=1e-13)
        out.backward()
        assert math.isclose(x.grad, 1 - math.tanh(0.4) ** 2, rel_tol=1e-13), name
        case = mb.make_case("custom-op-step", engine, "smoke")
        assert case.count == 1 and case.unit == "ms/step"
        for _ in range(3):
            case.setup()
            case.run()
        result = case.check()
        case.release()
        assert result["parameters"] == 41, name
        assert result["last_loss"] < result["first_step_loss"], (name, result)  # it trains
        losses[name] = result["first_step_loss"]
    first = losses["reference"]
    assert all(math.isclose(v, first, rel_tol=1e-12) for v in losses.values()), losses


def test_replayed_and_optimizer_workloads_once_the_apis_exist(monkeypatch):
    """demo-step-replayed and optimizer-step with stand-ins for the APIs other work adds: the
    engine's Value gains recompute(), micrograd_fast.optim an SGD with step() and zero_grad()."""
    from micrograd_fast import reference

    class SGD:
        def __init__(self, params, lr):
            self.params, self.lr = list(params), lr

        def zero_grad(self):
            for p in self.params:
                p.grad = 0.0

        def step(self):
            for p in self.params:
                p.data -= self.lr * p.grad

    calls = []
    monkeypatch.setattr(reference.Value, "recompute", lambda self: calls.append(self),
                        raising=False)
    monkeypatch.setattr(mb, "_fast_module", lambda name: types.SimpleNamespace(SGD=SGD))
    monkeypatch.setattr(mb, "_replay_missing", lambda: None)
    compiled = types.SimpleNamespace(**dict(vars(mb.load_engine("reference")), name="fast",
                                            kind="compiled"))
    case = mb.make_case("demo-step-replayed", compiled, "smoke")
    assert case.extra["mode"] == "replayed" and case.count == 1
    case.setup()
    case.run()
    result = case.check()
    assert len(calls) == 1
    eager = mb.make_case("demo-step-replayed", mb.load_engine("reference"), "smoke")
    assert eager.extra["mode"] == "eager"
    eager.run()
    assert result["first_step_loss"] == eager.check()["first_loss"]
    assert result["parameters"] == 337

    opt_case = mb.make_case("optimizer-step", compiled, "smoke")
    assert opt_case.extra["mode"] == "optimizer"
    assert opt_case.count == 337 * mb.SIZES["smoke"]["reps"] and opt_case.unit == "ns/param"
    opt_case.setup()
    opt_case.run()
    assert opt_case.check()["exact_mismatches"] == 0
    loop_case = mb.make_case("optimizer-step", mb.load_engine("reference"), "smoke")
    assert loop_case.extra["mode"] == "loop"


def test_replayed_and_optimizer_workloads_say_why_they_are_skipped():
    engine = mb.load_engine("reference")
    if mb._replay_missing() is not None:
        with pytest.raises(mb.WorkloadUnavailable, match="recompute|optim|compiled"):
            mb.make_case("demo-step-replayed", engine, "smoke")
    if mb._fast_module("optim") is None:
        with pytest.raises(mb.WorkloadUnavailable, match="micrograd_fast.optim"):
            mb.make_case("optimizer-step", engine, "smoke")


def test_no_engine_computed_something_else(report):
    """Every engine passed mb.wrong_results (the command line's check of what was timed), and a
    training step timed twice or more was checked after its first update too."""
    for workload, entry in report["results"].items():
        assert not entry.get("wrong"), (workload, entry.get("errors"))
    for workload in ("demo-step", "custom-op-step"):
        for name, result in report["results"][workload]["engines"].items():
            assert len(result["runs"]) < 2 or result["extra"]["second_step_loss"] is not None


def _break_reference(how, monkeypatch):
    """Make the reference engine compute something else, in one way."""
    from micrograd_fast import reference

    if how == "backward":  # backward() does nothing
        monkeypatch.setattr(reference.Value, "backward", lambda self: None)
    elif how == "no graph":  # + computes the number but records no graph
        monkeypatch.setattr(reference.Value, "__add__",
                            lambda self, o: reference.Value(self.data + getattr(o, "data", o)))
    elif how == "leak":  # every Value ever made is kept: teardown frees nothing
        kept = []
        init = reference.Value.__init__

        def keep(self, *args, **kwargs):
            init(self, *args, **kwargs)
            kept.append(self)
        monkeypatch.setattr(reference.Value, "__init__", keep)


@pytest.mark.parametrize("how, workloads", [
    ("backward", ["backward-layered", "demo-step", "custom-op-step"]),
    ("no graph", ["binary-op"]),
    ("leak", ["teardown"]),
])
def test_an_engine_that_computes_something_else_is_reported_not_timed(how, workloads,
                                                                      monkeypatch, capsys):
    sizes = mb.SIZES["smoke"]
    for workload in workloads:  # the oracle's numbers, before the engine is broken
        if workload in mb.COMPARED:
            mb.reference_values(workload, sizes)
    _break_reference(how, monkeypatch)
    code = mb.main(["--engines", "reference", "--size", "smoke", "--workloads", *workloads])
    out = capsys.readouterr()
    assert code == 1
    for workload in workloads:
        assert f"{workload} on reference: computed something else" in out.out, out.out
    assert "wrong results, not timed" in out.err
    table = out.out.split("ratios:")[0]
    assert not any(line.startswith(workloads[0]) and " reference " in line
                   for line in table.splitlines())


def test_teardown_frees_the_graph_in_the_timed_body():
    for name in ("reference", "micrograd"):
        try:
            engine = mb.load_engine(name)
        except mb.EngineUnavailable:
            continue
        case = mb.make_case("teardown", engine, "smoke")
        case.setup()
        assert case.check()["freed"] is False  # setup handed the graph over, alive
        case.run()
        assert case.check()["freed"] is True, name


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


def test_cli_fails_when_no_engine_asked_for_is_installed(monkeypatch, capsys):
    def absent(name):
        raise mb.EngineUnavailable(f"{name} is not installed")

    monkeypatch.setattr(mb, "load_engine", absent)
    assert mb.main(["--engines", "micrograd", "--size", "smoke", "--workloads", "binary-op"]) == 1
    out = capsys.readouterr()
    assert "skipped: micrograd (micrograd is not installed)" in out.out
    assert "no engine to run" in out.err
