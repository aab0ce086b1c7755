"""The in-process scenarios of test_out_of_memory.py, each run in a fresh interpreter:
`python tests/oom_scenarios.py SCENARIO c|py [ARG]` prints "ok" when the scenario holds.

(A fresh interpreter because CPython itself loses a reference now and then when an allocation
fails -- `list(t)` keeps one to `t` on 3.11 -- and the Values kept alive that way would stay in
the test session's arena, where other tests count the live nodes.)"""
import contextlib
import gc
import sys
import types

import _testcapi

import micrograd_fast.nn
from micrograd_fast.engine import _load_compiled
from mgf_examples import labelled_graph


@contextlib.contextmanager
def failing_allocations(start, stop=0):
    """Allocations number start .. stop - 1 from now fail (stop 0: every one from start on)."""
    _testcapi.set_nomemory(start, stop)
    try:
        yield
    finally:
        _testcapi.remove_mem_hooks()


@contextlib.contextmanager
def unraisables():
    """Collect what deallocators report instead of printing it (pytest would warn)."""
    seen = []
    old = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(u.exc_type)
    try:
        yield seen
    finally:
        sys.unraisablehook = old


def _check(engine):
    if engine.arena_stats:
        engine.module._check_arena()


def each_failure(engine, attempt, limit=400):
    """attempt() with the first failing allocation at 0, 1, 2, ...; after each try the engine
    must hold together. Returns how many tries failed before one got through."""
    for k in range(limit):
        result = None
        try:
            with unraisables():
                with failing_allocations(k):
                    result = attempt()
        except MemoryError:
            pass
        _check(engine)
        if result is not None:
            return k
    raise AssertionError(f"still failing after {limit} allocations")


def drop_failing(k, holder):
    """Clear holder, the last references to a graph, with the allocations from number k on
    failing. (No context manager around the failing part: leaving one can itself fail on 3.9
    while the allocations do, and then they would go on failing.)"""
    with unraisables():
        _testcapi.set_nomemory(k, 0)
        try:
            holder.clear()
        except MemoryError:  # (CPython 3.9 may raise it at the statement itself)
            pass
        finally:
            _testcapi.remove_mem_hooks()


def scenario_hand_built_node_with_op_and_label(engine):
    Value = engine.Value
    a, b = Value(1.5), Value(-2.0)
    kept = []
    for _ in range(3):
        kept.append(each_failure(engine, lambda: Value(3.0, (a, b), "myop", label="z")))
        v = Value(3.0, (a, b), "myop", label="z")
        assert (v.data, v._op, v.label, v._prev) == (3.0, "myop", "z", {a, b})
    out = a * b
    out.backward()
    assert (a.grad, b.grad) == (-2.0, 1.5)
    assert kept[0] > 0  # (the scenario did fail somewhere)


def scenario_keyword_constructor(engine):
    Value = engine.Value
    assert each_failure(engine, lambda: Value(0.25, label="w")) > 0
    v = Value(0.25, label="w")
    assert (v.data, v.label) == (0.25, "w")


def scenario_fused_helpers_with_numbers(engine, helper):
    Value = engine.Value
    xs = [Value(0.5), Value(-1.0)]
    if helper == "sum_values":
        attempt, want = (lambda: engine.sum_values(xs + [2.0])), 1.5
        watched, grad = xs[0], 1.0
    elif helper == "dot":
        attempt, want = (lambda: engine.dot([2.0, xs[0]], [xs[1], 3.0], 0.25)), -0.25
        watched, grad = xs[0], 3.0
    else:
        n = engine.nn.Neuron(2, nonlin=False)
        n.w, n.b = [Value(2.0), Value(0.5)], Value(0.25)
        attempt, want = (lambda: n([1.0, 4.0])), 4.25
        watched, grad = n.w[1], 4.0
    assert each_failure(engine, attempt) > 0
    out = attempt()
    assert out.data == want
    out.backward()
    assert watched.grad == grad


def scenario_teardown_with_python_backward_and_labels(engine):
    Value = engine.Value

    def build():
        x = Value(0.5)
        y = x
        for k in range(50):
            z = Value(y.data * 2.0, (y,), "double", label=f"n{k}")
            z._backward = lambda z=z, y=y: None
            y = z * 1.0
        return x, y

    for k in range(60):
        x, y = build()
        holder = [y]
        del y
        drop_failing(k, holder)
        _check(engine)
        del x
        gc.collect()
        _check(engine)
    w = Value(3.0) * Value(2.0)
    w.backward()
    assert w.data == 6.0


def scenario_backward_over_nodes_a_teardown_left(engine):
    """A teardown that runs out of memory (freeing a node's label) leaves the nodes still dying
    on a list chained through their marks, until the next release. A backward() in between
    reads the marks of those slots, and a link must never read as its own pass's: the dropped
    graph (its grads set) would add into x."""
    Value = engine.Value
    x = Value(0.5)
    for k in range(60):
        holder = labelled_graph(x)
        drop_failing(k, holder)
        live = x * 3.0  # (made and used without dropping any Value: nothing is released)
        if engine.arena_stats:  # every pass a new epoch, from 0 past the indices of the slots
            engine.module._restart_epochs()
        for _ in range(engine.arena_stats()["high_water"] + 2 if engine.arena_stats else 1):
            x.grad = 0.0
            live.backward()
            if x.grad != 3.0:
                raise AssertionError(f"k={k}: x.grad {x.grad}, not 3.0")
        _check(engine)
        del live
        gc.collect()
        _check(engine)


def scenario_backward_over_nodes_its_callback_left(engine):
    """The same list left by a teardown that fails inside a hand-built node's _backward, in the
    middle of a backward() whose scan goes on over the slots of the dropped graph."""
    Value = engine.Value
    x = Value(0.5)

    def one_pass(k):
        holder = labelled_graph(x)
        base = x * 3.0
        top = Value(base.data, (base,), "drop")

        def backward():
            base.grad += top.grad
            drop_failing(k, holder)

        top._backward = backward
        x.grad = 0.0
        top.backward()
        top._backward = lambda: None  # (no cycle through the closure: the graph goes at once)
        if x.grad != 3.0:
            raise AssertionError(f"k={k}: x.grad {x.grad}, not 3.0")
        return engine.arena_stats()["high_water"] if engine.arena_stats else 0

    for k in range(0, 60, 2):
        span = one_pass(k)  # (every pass of this k lays its nodes out as this one)
        if engine.arena_stats:  # every pass a new epoch, from 0 past the indices of the slots
            engine.module._restart_epochs()
        for _ in range(span + 2):
            one_pass(k)
        gc.collect()
        _check(engine)


def _engine(name):
    if name == "c":
        module = _load_compiled()
    else:
        import micrograd_fast.reference as module
    return types.SimpleNamespace(
        name=name, module=module, Value=module.Value, dot=module.dot,
        sum_values=module.sum_values, nn=micrograd_fast.nn.over(module),
        arena_stats=getattr(module, "arena_stats", None))


if __name__ == "__main__":
    scenario, engine_name, *args = sys.argv[1:]
    engine = _engine(engine_name)
    globals()["scenario_" + scenario](engine, *args)
    _check(engine)
    print("ok")
