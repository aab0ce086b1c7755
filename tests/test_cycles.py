"""Values that only Python's cyclic collector can free -- the lecture's hand-built nodes (a
`_backward` closure over `out`), subclass instances, Values with extra attributes -- when they
sit under built-in operators: a dropped graph goes as a whole (one collection at most, as in
micrograd), never one level per collection; and nothing still in use is ever freed."""
import gc
import weakref

import pytest


@pytest.fixture
def no_auto_gc():
    """A collected heap, and no automatic collections during the test: what is freed, is freed
    by reference counting or by the test's own gc.collect()."""
    while gc.collect():
        pass
    was = gc.isenabled()
    gc.disable()
    yield
    if was:
        gc.enable()
    while gc.collect():
        pass


def live(engine):
    return engine.arena_stats()["live"] if engine.arena_stats else None


def half(Value, x):
    """x * 0.5, built the lecture's way: a hand-made node and a closure over it."""
    out = Value(x.data * 0.5, (x,), "half")

    def _backward():
        x.grad += 0.5 * out.grad
    out._backward = _backward
    return out


def mixed_chain(Value, levels, keep=None):
    """y = half(y) + 1.0, `levels` times, from a leaf; weak references to the hand-built nodes."""
    x = Value(1.0)
    y, refs = x, []
    for k in range(levels):
        h = half(Value, y)
        refs.append(weakref.ref(h))
        if keep is not None and k in keep:
            keep[k] = h
        y = h + 1.0
    return x, y, refs


def expected_data(levels):
    d = 1.0
    for _ in range(levels):
        d = d * 0.5 + 1.0
    return d


def test_a_mixed_graph_goes_in_one_collection(engine, no_auto_gc):
    x, y, refs = mixed_chain(engine.Value, 60)
    y.backward()
    assert y.data == expected_data(60)
    assert x.grad == 0.5 ** 60
    before = live(engine)
    del y
    gc.collect()  # one pass: upstream micrograd needs one too
    assert [r() for r in refs] == [None] * 60
    if before is not None:
        assert live(engine) == 1  # x alone
    del x


def test_a_mixed_graph_under_a_plain_top_needs_no_collection(c_engine, no_auto_gc):
    # the top is a built-in operator's node: dropping it frees everything below, at once
    freed = c_engine.arena_stats()["cycles_freed"]
    x, y, refs = mixed_chain(c_engine.Value, 60)
    y.backward()
    del y
    assert [r() for r in refs] == [None] * 60
    assert live(c_engine) == 1
    assert c_engine.arena_stats()["cycles_freed"] == freed + 60
    assert x.grad == 0.5 ** 60


def test_a_training_loop_with_hand_built_ops_stays_flat(c_engine, no_auto_gc):
    # the lecture's MLP with its own tanh (a subclass method, hand-built), trained without the
    # collector ever running: every step's graph is freed when the next step replaces it
    import math
    import random
    Value = c_engine.Value

    class V(Value):
        def tanh(self):
            t = math.tanh(self.data)
            out = V(t, (self,), "tanh")

            def _backward():
                self.grad += (1 - t ** 2) * out.grad
            out._backward = _backward
            return out

    rng = random.Random(0)
    sizes = [3, 4, 4, 1]
    layers = [[([V(rng.uniform(-1, 1)) for _ in range(nin)], V(rng.uniform(-1, 1)))
               for _ in range(nout)] for nin, nout in zip(sizes, sizes[1:])]
    params = [p for layer in layers for w, b in layer for p in w + [b]]
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    ys = [1.0, -1.0, -1.0, 1.0]

    def forward(x):
        for layer in layers:
            x = [V.tanh(sum((wi * xi for wi, xi in zip(w, x)), b)) for w, b in layer]
        return x[0]

    baseline = live(c_engine)
    losses, lives = [], []
    for _ in range(50):
        loss = sum((forward(x) - y) ** 2 for x, y in zip(xs, ys))
        for p in params:
            p.grad = 0.0
        loss.backward()
        for p in params:
            p.data -= 0.05 * p.grad
        losses.append(loss.data)
        del loss
        lives.append(live(c_engine))
    assert lives == [baseline] * 50  # the parameters alone
    assert losses[-1] < losses[0] / 4


def test_values_still_referred_to_are_kept(engine, no_auto_gc):
    # some hand-built nodes kept by name, some through their closure alone, one through an
    # object of the user's: those, and everything they reach, must survive the graph above
    Value = engine.Value
    kept = {10: None, 30: None}
    x, y, refs = mixed_chain(Value, 40, keep=kept)
    closures = [refs[20]()._backward]
    holder = type("Holder", (), {})()
    holder.node = refs[35]()
    del y
    gc.collect()
    alive = [k for k, r in enumerate(refs) if r() is not None]
    assert alive == list(range(36))  # 35 and everything below it
    assert refs[20]()._backward is closures[0]
    # they still work
    node = refs[35]()
    node.backward()
    assert x.grad == 0.5 ** 36
    for k in (35, 30, 20, 10):
        assert refs[k]().data == expected_data(k) * 0.5
    del holder, kept, closures, node
    gc.collect()
    assert [r() for r in refs] == [None] * 40


@pytest.mark.parametrize("how", ["subclass", "attribute"])
def test_kept_values_under_built_in_operators_go_in_one_collection(engine, no_auto_gc, how):
    Value = engine.Value
    finalized = []

    class MyValue(Value):
        def __del__(self):  # runs before anything is cleared, as the collector does it
            finalized.append((self.data, self.tag))

    y = Value(1.0)
    refs = []
    for k in range(50):
        if how == "subclass":
            y = MyValue(y.data, (y,), "id")
            y.tag = k
        else:
            y = y * 1.0
            y.step = k  # an extra attribute: the node keeps this very object
            y.own = y   # and a cycle of its own
        refs.append(weakref.ref(y))
        y = y + 0.5
    assert y.data == 26.0
    y.backward()
    del y
    gc.collect()
    assert [r() for r in refs] == [None] * 50
    if how == "subclass":
        assert sorted(finalized) == [(1.0 + 0.5 * k, k) for k in range(50)]  # each once


def test_a_node_with_two_parents_lives_while_either_does(engine, no_auto_gc):
    Value = engine.Value
    x = Value(3.0)
    h = half(Value, x)
    r = weakref.ref(h)
    a, b = h + 1.0, h * 2.0
    del h
    a.backward()
    del a
    gc.collect()
    assert r() is not None  # b still uses it
    x.grad = 0.0
    b.backward()
    assert x.grad == 0.5 * (1.0 + 2.0)  # h's grad still holds a's 1.0, as in micrograd
    del b
    gc.collect()
    assert r() is None


def test_what_the_check_cannot_see_whole_is_left_to_the_collector(engine, no_auto_gc):
    # a closure that reaches more objects than the check looks at, one of which the user still
    # holds and which refers back to the node: kept (the check can miss garbage, never free
    # what is in use); once the user's reference goes, the collector frees it all
    Value = engine.Value

    def build():
        x = Value(2.0)
        out = Value(x.data * 3.0, (x,), "triple")
        crowd = [[k] for k in range(300)]
        crowd[-1].append(out)

        def _backward():
            x.grad += 3.0 * out.grad + 0.0 * len(crowd)
        out._backward = _backward
        return x, weakref.ref(out), crowd[-1]

    x, r, outside = build()
    y = r() + 1.0
    del y
    gc.collect()
    assert r() is not None
    node = r()
    node.backward()
    assert x.grad == 3.0
    del node, outside
    while gc.collect():
        pass
    assert r() is None


def test_a_closure_in_a_busy_module_is_freed_too(c_engine, no_auto_gc):
    # a script's namespace full of objects: the check looks at the closure (its cells), not at
    # the function's globals, so it still decides at once
    namespace = {"Value": c_engine.Value}
    namespace.update({f"data_{k}": [[k]] for k in range(300)})
    exec(
        "def half(x):\n"
        "    out = Value(x.data * 0.5, (x,), 'half')\n"
        "    def _backward():\n"
        "        x.grad += 0.5 * out.grad\n"
        "    out._backward = _backward\n"
        "    return out\n",
        namespace,
    )
    half = namespace["half"]
    x = c_engine.Value(1.0)
    y, refs = x, []
    for _ in range(30):
        h = half(y)
        refs.append(weakref.ref(h))
        y = h + 1.0
    del h
    y.backward()
    assert x.grad == 0.5 ** 30
    del y
    assert [r() for r in refs] == [None] * 30
    assert live(c_engine) == 1
