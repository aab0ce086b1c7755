"""no_grad() / enable_grad() / is_grad_enabled(): operators under no_grad return plain leaves with
the usual forward value; the mode is per thread, re-entrant and restored on exceptions."""
import gc
import random
import threading

import pytest

import micrograd_fast


def every_op(E, a, b):
    return [
        a + b, a + 2, 2 + a, a * b, a * 3, 3 * a, a - b, a - 1, 1 - a, -a, a / b, a / 4, 4 / a,
        a ** 2, a ** 0.5, a ** b, 2 ** a, a.relu(), a.tanh(), a.exp(), a.log(), a.sigmoid(),
        E.dot([a, b], [b, a], a), E.dot([a, 2.0], [1.5, b], 0.5), E.sum_values([a, b, 1.0]),
        E.sum_values([a, b], start=a),
    ]


def test_no_grad_gives_leaves_with_the_same_numbers(engine):
    E = engine.module
    a, b = engine.Value(1.5), engine.Value(0.75)
    with_graph = every_op(E, a, b)
    with E.no_grad():
        assert not E.is_grad_enabled()
        leaves = every_op(E, a, b)
    assert E.is_grad_enabled()
    assert [v.data for v in leaves] == [v.data for v in with_graph]
    assert all(v._prev == set() and v._op == '' for v in leaves)
    assert all(v._prev for v in with_graph)
    out = leaves[3] * 2  # recording again
    out.backward()
    assert leaves[3].grad == 2.0 and a.grad == 0.0


def test_no_grad_keeps_no_nodes(c_engine):
    E = c_engine.module
    random.seed(0)
    model = c_engine.nn.MLP(2, [16, 16, 1])
    inputs = [[c_engine.Value(random.uniform(-1, 1)) for _ in range(2)] for _ in range(100)]
    gc.collect()  # (a collection inside the block could free other tests' nodes meanwhile)
    gc.disable()
    try:
        live = c_engine.arena_stats()["live"]
        with E.no_grad():
            scores = [model(x) for x in inputs]
            extra = [(s * 2 - 1).tanh() / 3 + E.sum_values([s, 1.0]) for s in scores]
        assert c_engine.arena_stats()["live"] == live + len(scores) + len(extra)
    finally:
        gc.enable()
    expected = [model(x).data for x in inputs]
    assert [s.data for s in scores] == expected


def test_no_grad_model_evaluation_matches(engine):
    random.seed(1)
    model = engine.nn.MLP(2, [8, 8, 1])
    x = [engine.Value(0.3), engine.Value(-0.6)]
    y = model(x)
    with engine.module.no_grad():
        z = model(x)
    assert z.data == y.data and z._prev == set()


def test_re_entrant_and_enable_grad(engine):
    E = engine.module
    a = engine.Value(1.0)
    ng = E.no_grad()
    with ng:
        with ng:  # the same object, nested
            assert (a * 2)._prev == set()
            with E.enable_grad():
                assert E.is_grad_enabled()
                assert (a * 2)._prev
            assert not E.is_grad_enabled()
        assert not E.is_grad_enabled()
    assert E.is_grad_enabled()
    assert (a * 2)._prev


def test_restored_after_an_exception(engine):
    E = engine.module
    with pytest.raises(ZeroDivisionError):
        with E.no_grad():
            engine.Value(0.0) ** -1
    assert E.is_grad_enabled()
    with pytest.raises(KeyError):
        with E.no_grad():
            with E.enable_grad():
                raise KeyError("x")
    assert E.is_grad_enabled()


def test_decorator(engine):
    E = engine.module

    @E.no_grad()
    def evaluate(v):
        """doc"""
        assert not E.is_grad_enabled()
        return v * 3

    @E.enable_grad()
    def record(v):
        return v * 3

    a = engine.Value(2.0)
    out = evaluate(a)
    assert out.data == 6.0 and out._prev == set()
    assert evaluate.__name__ == "evaluate" and evaluate.__doc__ == "doc"
    assert E.is_grad_enabled()
    with E.no_grad():
        assert record(a)._prev
        assert not E.is_grad_enabled()


def test_decorator_without_parentheses_and_on_generators(engine):
    E = engine.module

    @E.no_grad
    def evaluate(v):
        return E.is_grad_enabled(), v * 3

    mode, out = evaluate(engine.Value(2.0))
    assert (mode, out.data, out._prev) == (False, 6.0, set())

    @E.no_grad()
    def batches(n):
        # as torch: the generator's own code runs without grad, the caller's code between
        # its yields with the caller's mode
        for k in range(n):
            got = yield (E.is_grad_enabled(), engine.Value(float(k)) * 2)
            assert got in (None, "sent")
        return "done"

    seen = []
    gen = batches(3)
    mode, value = next(gen)
    seen.append(mode)
    assert E.is_grad_enabled() and value._prev == set()
    mode, value = gen.send("sent")
    seen.append(mode)
    assert E.is_grad_enabled()
    with pytest.raises(StopIteration) as stop:
        next(gen), next(gen)
    assert stop.value.value == "done" and seen == [False, False]
    closed = batches(3)
    next(closed)
    closed.close()  # (GeneratorExit is passed on)
    assert E.is_grad_enabled()


def test_gradcheck_inside_no_grad(engine):
    # gradcheck records its own graphs even when called inside no_grad()
    with engine.module.no_grad():
        assert micrograd_fast.gradcheck(lambda x: x * x + x.tanh(), [engine.Value(0.7)])
        assert not engine.module.is_grad_enabled()


def test_per_thread(engine):
    E = engine.module
    a = engine.Value(1.0)
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def worker():
        with E.no_grad():
            inside.set()
            release.wait(10)
            seen["worker"] = ((a * 2)._prev == set(), E.is_grad_enabled())

    t = threading.Thread(target=worker)
    t.start()
    assert inside.wait(10)
    try:
        assert E.is_grad_enabled()  # the other thread's no_grad does not reach this one
        assert (a * 2)._prev
    finally:
        release.set()
        t.join(10)
    assert seen["worker"] == (True, False)
    # and a new thread starts with grad on, even while this one is in no_grad
    with E.no_grad():
        t = threading.Thread(target=lambda: seen.update(fresh=E.is_grad_enabled()))
        t.start()
        t.join(10)
    assert seen["fresh"] is True


def test_exported_from_the_package():
    assert micrograd_fast.no_grad is micrograd_fast.engine.no_grad
    assert micrograd_fast.enable_grad is micrograd_fast.engine.enable_grad
    assert micrograd_fast.is_grad_enabled() is True
    with micrograd_fast.no_grad():
        assert micrograd_fast.Value(2.0) * 2 is not None
        assert not micrograd_fast.is_grad_enabled()
