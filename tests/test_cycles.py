"""Values that only Python's cyclic collector can free -- the lecture's hand-built nodes (a
`_backward` closure over `out`), subclass instances, Values with extra attributes -- when they
sit under built-in operators: a dropped graph goes as a whole (one collection at most, as in
micrograd), never one level per collection; nothing still in use is ever freed; and what code
runs meanwhile (finalizers, weak references) never sees a Value half taken apart."""
import gc
import weakref

import pytest
from mgf_examples import labelled_graph


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


class Token:
    """Captured by a node's closure: records its number in `gone` when it is freed (a weak
    reference to the node itself would keep the engine's check from freeing it, see below)."""

    def __init__(self, k, gone):
        self.k, self.gone = k, gone

    def __del__(self):
        self.gone.append(self.k)


def half(Value, x, token=None):
    """x * 0.5, built the lecture's way: a hand-made node and a closure over it."""
    out = Value(x.data * 0.5, (x,), "half")

    def _backward():
        x.grad += 0.5 * out.grad
        assert token is not out  # (keeps the token in the closure)
    out._backward = _backward
    return out


def triple(Value, x, extras):
    """x * 3, built by hand, whose closure also holds the list `extras` (what a test hangs on
    the node; filled in after, since it may refer to the node)."""
    out = Value(x.data * 3.0, (x,), "triple")

    def _backward():
        x.grad += 3.0 * out.grad
        assert extras is not out  # (keeps the extras in the closure)
    out._backward = _backward
    return out


def mixed_chain(Value, levels, gone, keep=None):
    """y = half(y) + 1.0, `levels` times, from a leaf: (leaf, top); each hand-built node's
    Token k lands in `gone` when the node is freed; those numbered in keep are kept there."""
    x = Value(1.0)
    y = x
    for k in range(levels):
        h = half(Value, y, Token(k, gone))
        if keep is not None and k in keep:
            keep[k] = h
        y = h + 1.0
    return x, y


def expected_data(levels):
    d = 1.0
    for _ in range(levels):
        d = d * 0.5 + 1.0
    return d


def test_a_mixed_graph_goes_in_one_collection(engine, no_auto_gc):
    gone = []
    x, y = mixed_chain(engine.Value, 60, gone)
    y.backward()
    assert y.data == expected_data(60)
    assert x.grad == 0.5 ** 60
    del y
    gc.collect()  # at most one pass: upstream micrograd needs one too
    assert sorted(gone) == list(range(60))
    if engine.arena_stats:
        assert live(engine) == 1  # x alone


def test_a_mixed_graph_under_a_plain_top_needs_no_collection(c_engine, no_auto_gc):
    # the top is a built-in operator's node: dropping it frees everything below, at once
    freed = c_engine.arena_stats()["cycles_freed"]
    gone = []
    x, y = mixed_chain(c_engine.Value, 60, gone)
    y.backward()
    del y
    assert sorted(gone) == list(range(60))
    assert live(c_engine) == 1
    assert c_engine.arena_stats()["cycles_freed"] > freed
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
    # hand-built nodes kept by name, through their closure alone, through an object of the
    # user's: those, and everything they reach, must survive the graph above, intact
    Value = engine.Value
    gone, kept = [], {10: None, 35: None}
    x, y = mixed_chain(Value, 40, gone, keep=kept)
    closure = kept.pop(10)._backward  # node 10 is now held by its closure alone
    holder = type("Holder", (), {})()
    holder.node = kept.pop(35)
    holder.node.tag = "mine"
    del y
    gc.collect()
    assert sorted(gone) == [36, 37, 38, 39]  # 35 and everything below it live
    node = holder.node
    assert node.tag == "mine" and node.data == expected_data(35) * 0.5
    node.backward()
    assert x.grad == 0.5 ** 36
    below = node
    while below.data != expected_data(10) * 0.5:
        below = next(v for v in below._prev if v._op in ("half", "+"))
    assert below._backward is closure
    del holder, node, below, closure
    gc.collect()
    assert sorted(gone) == list(range(40))


@pytest.mark.parametrize("how", ["subclass", "attribute"])
def test_kept_values_under_built_in_operators_go_in_one_collection(engine, no_auto_gc, how):
    Value = engine.Value
    finalized = []

    class MyValue(Value):
        def __del__(self):  # runs before anything is taken apart, as the collector does it
            finalized.append((self.data, self.tag, self._op))

    y = Value(1.0)
    for k in range(50):
        if how == "subclass":
            y = MyValue(y.data, (y,), "id")
            y.tag = k
        else:
            y = y * 1.0
            y.step = k  # an extra attribute: the node keeps this very object
            y.own = y   # and a cycle of its own
            y.token = Token(k, finalized)
        y = y + 0.5
    assert y.data == 26.0
    y.backward()
    del y
    gc.collect()
    if how == "subclass":
        assert sorted(finalized) == [(1.0 + 0.5 * k, k, "id") for k in range(50)]  # each once
    else:
        assert sorted(finalized) == list(range(50))


def test_a_node_with_two_parents_lives_while_either_does(engine, no_auto_gc):
    Value = engine.Value
    gone = []
    x = Value(3.0)
    h = half(Value, x, Token(0, gone))
    a, b = h + 1.0, h * 2.0
    del h
    a.backward()
    del a
    gc.collect()
    assert gone == []  # b still uses it
    x.grad = 0.0
    b.backward()
    assert x.grad == 0.5 * (1.0 + 2.0)  # h's grad still holds a's 1.0, as in micrograd
    del b
    gc.collect()
    assert gone == [0]


def test_what_the_check_cannot_see_whole_is_left_to_the_collector(engine, no_auto_gc):
    # a closure that reaches more objects than the check looks at, one of which the user still
    # holds and which refers back to the node: kept (the check can miss garbage, never free
    # what is in use); once the user's reference goes, the collector frees it all
    Value = engine.Value
    gone = []

    def build():
        x, extras = Value(2.0), []
        out = triple(Value, x, extras)
        crowd = [[k] for k in range(300)]
        crowd[-1].append(out)
        extras += [crowd, Token(0, gone)]
        return x, out, crowd[-1]

    x, out, outside = build()
    y = out + 1.0
    del out, y
    gc.collect()
    assert gone == []
    node = outside[-1]
    node.backward()
    assert x.grad == 3.0
    del node, outside
    while gc.collect():
        pass
    assert gone == [0]


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
    half_ = namespace["half"]
    x = c_engine.Value(1.0)
    y = x
    for _ in range(30):
        y = half_(y) + 1.0
    y.backward()
    assert x.grad == 0.5 ** 30
    del y
    assert live(c_engine) == 1


def test_a_closure_over_a_big_table_is_freed_without_walking_it(c_engine, no_auto_gc):
    # every op's closure shares a 100,000-entry table: the check does not walk it (a bounded
    # walk), yet still frees the graph at once
    table = [[k] for k in range(100_000)]
    Value = c_engine.Value

    def lookup_half(x):
        out = Value(x.data * 0.5, (x,), "half")

        def _backward():
            x.grad += 0.5 * out.grad * (len(table) > 0)
        out._backward = _backward
        return out

    x = Value(1.0)
    y = x
    for _ in range(50):
        y = lookup_half(y) + 1.0
    y.backward()
    assert x.grad == 0.5 ** 50
    del y
    assert live(c_engine) == 1


# ---- code that runs while a graph is freed sees whole Values -----------------------------------

def test_a_finalizer_that_resurrects_a_node_finds_it_whole(engine, no_auto_gc):
    Value = engine.Value
    saved = []

    class Rescuer:
        def __init__(self, node):
            self.node = node

        def __del__(self):
            saved.append(self.node)

    def build():
        x, extras = Value(2.0), []
        out = triple(Value, x, extras)
        out.tag = "hello"
        extras.append(Rescuer(out))
        return x, out + 1.0

    x, y = build()
    del y
    gc.collect()
    (node,) = saved
    assert node.tag == "hello"
    node.backward()
    assert x.grad == 3.0


def test_backward_inside_a_teardown_over_graphs_it_dropped(engine, no_auto_gc):
    # code that a teardown runs (here the __del__ of what a hand-built node's callable held)
    # may drop graphs -- only queued then, on a list chained through the nodes' marks, as a
    # teardown is running -- and call backward() over their slots: a link must never read as
    # the pass's epoch (x.grad came out 68.0 instead of 6.0, without any memory pressure)
    Value = engine.Value
    x = Value(0.5)
    seen = []

    class Finalizer:
        def __del__(self):
            live = x * 3.0
            graphs = [labelled_graph(x, 5)[0] for _ in range(3)]  # (their freeing is set aside)
            w = Value(2.0)
            m = live * w
            del graphs
            if engine.arena_stats:  # every pass a new epoch, from 0 past the slots' indices
                engine.module._restart_epochs()
            passes = engine.arena_stats()["high_water"] + 3 if engine.arena_stats else 3
            for _ in range(passes):
                x.grad = w.grad = live.grad = 0.0
                m.backward()  # (not zero_grad(): its cached order would spare the scan)
                if (x.grad, w.grad) != (6.0, 1.5):
                    seen.append((x.grad, w.grad))
                    return
            seen.append("all passes right")

    a = x * 1.0
    h = Value(a.data, (a,), "hold")
    fin = Finalizer()
    h._backward = lambda fin=fin: None
    del fin
    z = h * 2.0
    del a, h
    del z  # freeing h releases its callable: the finalizer runs inside the teardown
    gc.collect()
    assert seen == ["all passes right"]


def test_a_weak_reference_never_hands_out_a_half_freed_value(engine, no_auto_gc):
    # weakly referred-to garbage is left to the collector, which clears the weak references
    # first: a lookup made by a finalizer meanwhile finds the node gone or whole
    Value = engine.Value
    registry = weakref.WeakValueDictionary()
    seen = []

    class Looker:
        def __del__(self):
            node = registry.get("n")
            seen.append(None if node is None else (node.tag, node._op))

    def build():
        x, extras = Value(2.0), []
        out = triple(Value, x, extras)
        out.tag = "t"
        extras.append(Looker())
        registry["n"] = out
        return x, out + 1.0

    x, y = build()
    del y
    while gc.collect():
        pass
    assert seen in ([None], [("t", "triple")])
    assert "n" not in registry


def test_a_generator_closed_with_the_graph_sees_the_node_whole(engine, no_auto_gc):
    Value = engine.Value
    seen = []

    def build():
        x, extras = Value(2.0), []
        out = triple(Value, x, extras)
        out.tag = "out"

        def watcher():
            try:
                yield
            finally:
                seen.append((out.tag, out._backward.__name__))

        gen = watcher()
        next(gen)
        extras.append(gen)
        return x, out + 1.0

    x, y = build()
    del y
    gc.collect()
    assert seen == [("out", "_backward")]


def test_a_slotted_subclass_under_built_in_operators_goes_in_one_collection(engine, no_auto_gc):
    Value = engine.Value
    gone = []

    class S(Value):
        __slots__ = ("me", "token")

    y = Value(1.0)
    for k in range(20):
        s = S(y.data, (y,), "id")
        s.me = s  # a cycle through a slot
        s.token = Token(k, gone)
        y = s + 1.0
    del s
    y.backward()
    del y
    gc.collect()
    assert sorted(gone) == list(range(20))


def test_reinitialising_a_held_value_never_frees_what_its_old_node_needs(c_engine, no_auto_gc):
    # P holds m; m.__init__ again binds m to a new leaf, while P's child stays m's old node,
    # whose closure refers to S. S is reachable (user -> P -> old node -> closure), so when S's
    # own parent goes it must stay whole. (The compiled engine's documented re-binding: the
    # reference engine turns m itself into a leaf, so P's backward reaches nothing there.)
    Value = c_engine.Value

    def make():
        x = Value(1.0)
        out = Value(2.0, (x,), "S")

        def s_backward():
            x.grad += out.grad
        out._backward = s_backward
        m = Value(3.0, (x,), "M")

        def m_backward():
            out.grad += 1.0
            out._backward()
        m._backward = m_backward
        P = Value(4.0, (m,), "P")
        m.__init__(0.0)
        (old,) = P._prev  # a Value of m's old node
        old.note = "old"
        out.partner = old
        return P, out + 1.0, x

    P, y, x = make()
    del y  # S's parent: S is a suspect, reachable only through P's old child
    (old,) = P._prev
    assert old.note == "old"
    (S,) = [c.cell_contents for c in old._backward.__closure__
            if isinstance(c.cell_contents, Value) and c.cell_contents.data == 2.0]
    assert S.partner is old
    del S, old
    P.backward()
    assert x.grad == 1.0


@pytest.mark.parametrize("where", ["table", "doc"])
def test_a_weak_reference_callback_in_the_garbage_never_runs_on_a_half_freed_value(
        engine, no_auto_gc, where):
    # the referent of a weak reference that is itself garbage dies with the graph; the
    # collector never calls such a callback. Here the referent sits where a bounded walk
    # would not look -- in a 300-entry table, or in the callable's __doc__ -- so freeing the
    # graph without seeing it all would run the callback on a Value already taken apart
    Value = engine.Value
    seen = []

    class R:
        pass

    def build():
        x, extras = Value(2.0), []
        out = triple(Value, x, extras)
        out.tag = "hello"
        r = R()
        extras.append(weakref.ref(r, lambda _: seen.append((out.tag, out._backward.__name__))))
        if where == "table":
            out.table = [r] + [0.0] * 300
        else:
            out._backward.__doc__ = r
        return out + 1.0

    y = build()
    del y
    gc.collect()
    assert seen in ([], [("hello", "_backward")])


@pytest.mark.parametrize("parents", [3, 14, 15, 16, 40])
def test_a_value_held_by_many_hand_built_parents_is_freed(engine, no_auto_gc, parents):
    # each hand-built parent holds its children's Values (as micrograd's _prev); the engine
    # counts them per node, exactly, however many there are (a count that stopped at some
    # limit would keep the child's cycle hidden from the collector for good)
    Value = engine.Value
    gone = []

    def run():
        x = Value(1.0)
        x.tag = Token(0, gone)  # a kept Value: its node holds it, a cycle of its own
        hs = [half(Value, x) for _ in range(parents)]
        top = engine.sum_values(hs) if engine.sum_values else sum(hs)
        top.backward()
        assert x.grad == 0.5 * parents
        return top

    top = run()
    del top
    gc.collect()
    assert gone == [0]
    if engine.arena_stats:
        assert live(engine) == 0


def test_held_counts_stay_exact_through_random_holds_and_drops(c_engine, no_auto_gc):
    # hundreds of hand-built parents over a few dozen children (most held by more than the 14
    # the node's flags can count: the rest goes to the side table), dropped in random order,
    # some children re-initialised: the arena check recounts every node's holders each time
    import random
    Value, check = c_engine.Value, c_engine.module._check_arena
    baseline = live(c_engine)
    for seed in range(6):
        rng = random.Random(seed)
        kids = [Value(float(k)) for k in range(rng.randint(20, 60))]
        parents = [Value(1.0, tuple(rng.sample(kids, rng.randint(1, 4))), "p")
                   for _ in range(rng.randint(300, 800))]
        check()
        rng.shuffle(parents)
        while parents:
            del parents[-rng.randint(1, 40):]
            if rng.random() < 0.05:
                kids[rng.randrange(len(kids))].__init__(2.0)
            if rng.random() < 0.2:
                parents.append(Value(1.0, tuple(rng.sample(kids, 2)), "q"))
            check()
        del kids
        check()
        assert live(c_engine) == baseline


def test_a_private_namespace_dies_with_the_graph_only_after_its_finalizers(engine, no_auto_gc):
    # the node's _backward is a function made by exec in a namespace of its own, which the
    # garbage refers to as well; what lives in that namespace (a finalizer, a weak reference
    # callback) must not run while the Value is half taken apart
    Value = engine.Value
    seen = []

    def look(tag):
        seen.append((tag, [(sorted(o.__dict__), o._backward.__name__) for o in gc.get_objects()
                           if type(o) is Value and o.data == 7.0]))  # (type(): isinstance asks
                                                                    # any object for __class__)

    class Z:
        def __del__(self):
            look("del")

    def build():
        x = Value(1.0)
        out = Value(7.0, (x,), "k")
        ns = {}
        exec("def bw():\n    pass\n", ns)
        ns["z"] = Z()
        ns["w"] = weakref.ref(ns["z"], lambda r: look("callback"))
        out._backward = ns.pop("bw")
        codes.append(out._backward.__code__)  # (else its code would die too, which the check
        out.ns, out.me = ns, out              # declines to free: that case is simpler)
        return out * 2.0

    codes = []
    y = build()
    del y
    gc.collect()
    for tag, values in seen:
        assert all(v == (["me", "ns"], "bw") for v in values), (tag, values)
    assert any(tag == "del" for tag, _ in seen)
