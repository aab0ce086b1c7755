"""Value.recompute(), graph-wide Value.zero_grad(), zero_grads() and assign(), on both engines.

recompute() must give exactly the numbers of rebuilding the same graph from the leaves' new data
(bit for bit, every node), raise before changing anything when a node has no forward rule, and
raise the operators' math errors."""
import array
import math
import random

import pytest


def bits(x):
    return math.copysign(1.0, x), float(x).hex()  # -0.0 and 0.0 differ here


def program(seed, nsteps=60):
    """A random program over a pool of Values using every operator (kept in safe domains)."""
    rng = random.Random(seed)
    ops = []
    for _ in range(nsteps):
        ops.append((rng.randrange(22), rng.random(), rng.random(), rng.random()))

    def run(E, leaves):
        pool = list(leaves)

        def pick(u):
            return pool[int(u * len(pool))]

        for op, u, v, w in ops:
            a, b = pick(u), pick(v)
            if op == 0:
                r = a + b
            elif op == 1:
                r = a * b
            elif op == 2:
                r = a - b
            elif op == 3:
                r = a / (b * b + 1)
            elif op == 4:
                r = 3.5 / (b * b + 0.5)
            elif op == 5:
                r = 1.25 - a
            elif op == 6:
                r = -a
            elif op == 7:
                r = a ** 2
            elif op == 8:
                r = (a * a + 1) ** 0.5
            elif op == 9:
                r = (a * a + 0.5) ** b.tanh()
            elif op == 10:
                r = 2 ** a.tanh()
            elif op == 11:
                r = a.relu()
            elif op == 12:
                r = a.tanh()
            elif op == 13:
                r = a.tanh().exp()
            elif op == 14:
                r = (a * a + 1).log()
            elif op == 15:
                r = a.sigmoid()
            elif op == 16:
                r = E.dot([a, b, pick(w)], [b, 0.5, a], pick(u * w))
            elif op == 17:
                r = E.sum_values([a, 2.0, b, pick(w)], start=0.25)
            elif op == 18:
                r = a + 1.5
            elif op == 19:
                r = 0.75 * a
            elif op == 20:
                r = (a * a + 0.25) ** -1
            else:
                r = a * 1e-3 + b
            # products are squashed (the structure never depends on the data: see
            # test_structure_is_fixed)
            pool.append(r.tanh() * 3 if op in (1, 7, 16, 21) or w < 0.3 else r)
        return pool

    return run


def start_data(seed, n=5):
    rng = random.Random(seed)
    return [rng.uniform(-2, 2) for _ in range(n)]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("how", ["assign", "data"])
def test_recompute_equals_rebuild(engine, seed, how):
    E = engine.module
    run = program(seed)
    leaves = [engine.Value(x) for x in start_data(seed)]
    pool = run(E, leaves)
    root = E.sum_values(pool[len(leaves):])
    new = start_data(seed + 1000)
    if how == "assign":
        E.assign(leaves, new)
    else:
        for v, x in zip(leaves, new):
            v.data = x
    got = root.recompute()
    fresh = run(E, [engine.Value(x) for x in new])
    fresh_root = E.sum_values(fresh[len(leaves):])
    assert bits(got) == bits(fresh_root.data) == bits(root.data)
    assert [bits(v.data) for v in pool] == [bits(v.data) for v in fresh]
    # a second replay after another change (the cached order in the compiled engine)
    E.assign(leaves, start_data(seed))
    again = run(E, [engine.Value(x) for x in start_data(seed)])
    root.recompute()
    assert [bits(v.data) for v in pool] == [bits(v.data) for v in again]


def test_engines_agree_on_recompute(engine, ref):
    run = program(99, 150)
    vals = [engine.Value(x) for x in start_data(5)]
    rvals = [ref.Value(x) for x in start_data(5)]
    pool, rpool = run(engine.module, vals), run(ref.module, rvals)
    root, rroot = engine.sum_values(pool), ref.sum_values(rpool)
    engine.module.assign(vals, start_data(6))
    ref.module.assign(rvals, start_data(6))
    assert bits(root.recompute()) == bits(rroot.recompute())
    assert [bits(v.data) for v in pool] == [bits(v.data) for v in rpool]


def test_recompute_resets_interior_grads_keeps_leaves(engine):
    x, w = engine.Value(1.5), engine.Value(-0.5)
    h = (x * w).tanh()
    out = h * h + 1
    out.backward()
    gx, gw = x.grad, w.grad
    assert h.grad != 0
    x.data = 0.25
    assert out.recompute() == out.data == math.tanh(0.25 * -0.5) ** 2 + 1
    assert h.grad == 0.0 and out.grad == 0.0  # as a rebuilt graph's new nodes
    assert (x.grad, w.grad) == (gx, gw)  # leaves keep theirs (an optimizer's zero_grad clears them)
    # so recompute + zero the leaves + backward == rebuild + backward
    x.grad = w.grad = 0.0
    out.backward()
    x2, w2 = engine.Value(0.25), engine.Value(-0.5)
    h2 = (x2 * w2).tanh()
    (h2 * h2 + 1).backward()
    assert (x.grad, w.grad) == (x2.grad, w2.grad)


def test_leaves_and_constants_keep_their_data(engine):
    x = engine.Value(2.0)
    y = x + 1  # the constant 1 is a leaf
    z = 3 * y
    x.data = 5.0
    assert z.recompute() == 18.0
    assert [v.data for v in y._prev if v is not x] == [1.0]
    assert x.data == 5.0
    assert engine.Value(7.0).recompute() == 7.0  # a leaf alone


def test_structure_is_fixed(engine):
    # the Python `if` that chose the graph is not re-run: replay keeps the branch taken
    x = engine.Value(1.0)
    y = x * 2 if x.data > 0 else x * 3
    x.data = -1.0
    assert y.recompute() == -2.0  # a rebuild would give -3.0


@pytest.mark.slow
def test_recompute_deep_chain(engine):
    n = 100_000
    x = engine.Value(0.5)
    y = x
    for _ in range(n):
        y = y * 0.99999 + 0.00001
    x.data = 0.25
    expected = 0.25
    for _ in range(n):
        expected = expected * 0.99999 + 0.00001
    assert bits(y.recompute()) == bits(expected)
    y.backward()
    y.zero_grad()
    assert x.grad == 0.0 and y.grad == 0.0


def test_python_backward_node_raises_before_changing_anything(engine):
    x = engine.Value(2.0, label='x')
    a = x * 3
    hand = engine.Value(a.data ** 2, (a,), 'sq', label='hand')

    def _backward():
        a.grad += 2 * a.data * hand.grad
    hand._backward = _backward
    out = (hand + x).tanh() + a
    before = [v.data for v in (x, a, hand, out)]
    x.data = 4.0
    with pytest.raises(RuntimeError, match=r"op 'sq', label 'hand'.*Python"):
        out.recompute()
    assert [v.data for v in (a, hand, out)] == before[1:]
    out.backward()  # the graph still works otherwise
    assert x.grad != 0.0


def test_assigned_backward_on_an_operator_node_raises(engine):
    x = engine.Value(2.0)
    m = x * x
    m.label = 'm'
    out = m + 1
    assert out.recompute() == 5.0  # (the compiled engine caches this order ...)
    m._backward = lambda: None  # (... which this invalidates)
    x.data = 3.0
    with pytest.raises(RuntimeError, match=r"op '\*', label 'm'"):
        out.recompute()
    assert out.data == 5.0 and m.data == 4.0


def test_leaf_with_a_python_backward_raises(engine):
    x = engine.Value(2.0, label='x')
    x._backward = lambda: None
    out = x * 3
    with pytest.raises(RuntimeError, match="label 'x'"):
        out.recompute()
    with pytest.raises(RuntimeError):
        x.recompute()
    out.zero_grad()  # needs no forward rule


@pytest.mark.parametrize("case", ["log", "exp", "pow0", "neg_frac"])
def test_math_errors_leave_nodes_below_updated(engine, case):
    x = engine.Value(1.0)
    a = x * 2  # below the failing node: updated
    if case == "log":
        b, bad, err = a.log(), -1.0, ValueError
    elif case == "exp":
        b, bad, err = (a * 100).exp(), 4.0, OverflowError
    elif case == "pow0":
        b, bad, err = a ** -1, 0.0, ZeroDivisionError
    else:
        b, bad, err = a ** 0.5, -1.0, ValueError
    c = b + 1  # above it: stale
    old_b, old_c = b.data, c.data
    x.data = bad
    with pytest.raises(err) as info:
        c.recompute()
    with pytest.raises(err) as direct:  # the operator's own error, same type and message
        if case == "log":
            (x * 2).log()
        elif case == "exp":
            (x * 2 * 100).exp()
        elif case == "pow0":
            (x * 2) ** -1
        else:
            (x * 2) ** 0.5
    assert str(info.value) == str(direct.value)
    assert a.data == bad * 2
    assert (b.data, c.data) == (old_b, old_c)


def test_recompute_inside_a_python_backward(engine):
    # a hand-built node's backward replays another graph while backward() owns the marks
    x = engine.Value(2.0)
    other = (x * x).tanh() + x
    seen = []
    y = engine.Value(1.0)
    hand = engine.Value(y.data * 2, (y,), 'h')

    def _backward():
        x.data = 0.5
        seen.append(other.recompute())
        y.grad += 2 * hand.grad
    hand._backward = _backward
    (hand * 3).backward()
    assert seen == [math.tanh(0.25) + 0.5]
    assert y.grad == 6.0


def test_recompute_after_compaction(engine):
    x = engine.Value(0.5)
    out = (x * 3).tanh() + x
    out.recompute()
    junk = [engine.Value(i) * 2 for i in range(30_000)]
    del junk  # mostly dead: the compiled arena compacts at the next operation
    engine.Value(1.0) + 1
    x.data = -0.25
    assert out.recompute() == math.tanh(-0.75) + -0.25


def test_zero_grad_of_a_graph(engine):
    x, w = engine.Value(1.5), engine.Value(2.0)
    k = engine.Value(3.0)  # not under the root: untouched
    k.grad = 7.0
    h = engine.dot([w, x], [x, 0.5], 0.1).relu()
    out = (h * x + 1).tanh()
    out.backward()
    assert x.grad != 0.0
    out.zero_grad()
    assert [v.grad for v in (x, w, h, out)] == [0.0] * 4
    assert k.grad == 7.0


def test_zero_grads(engine):
    vs = [engine.Value(i) for i in range(5)]
    for v in vs:
        v.grad = 3.0
    engine.module.zero_grads(vs[1:4])
    assert [v.grad for v in vs] == [3.0, 0.0, 0.0, 0.0, 3.0]
    engine.module.zero_grads(v for v in vs)
    assert [v.grad for v in vs] == [0.0] * 5
    with pytest.raises(TypeError):
        engine.module.zero_grads([vs[0], 1.0])


def test_assign_from_sequences_and_buffers(engine):
    E = engine.module
    vs = [engine.Value(0.0) for _ in range(3)]
    E.assign(vs, [1, 2.5, True])
    assert [v.data for v in vs] == [1.0, 2.5, 1.0]
    assert all(type(v.data) is float for v in vs)
    E.assign(tuple(vs), (4.0, 5.0, 6.0))
    assert [v.data for v in vs] == [4.0, 5.0, 6.0]
    E.assign(vs, array.array('d', [7.0, 8.0, 9.0]))
    assert [v.data for v in vs] == [7.0, 8.0, 9.0]
    E.assign(vs, memoryview(array.array('d', [1.0, 2.0, 3.0])))
    assert [v.data for v in vs] == [1.0, 2.0, 3.0]
    E.assign(vs, array.array('i', [4, 5, 6]))  # not doubles: converted one by one
    assert [v.data for v in vs] == [4.0, 5.0, 6.0]
    E.assign(vs, (x / 2 for x in range(3)))
    assert [v.data for v in vs] == [0.0, 0.5, 1.0]
    E.assign([], [])


def test_assign_numpy(engine):
    np = pytest.importorskip("numpy")
    E = engine.module
    vs = [engine.Value(0.0) for _ in range(3)]
    X = np.arange(12, dtype=np.float64).reshape(4, 3) / 3
    E.assign(vs, X[2])
    assert [v.data for v in vs] == [float(x) for x in X[2]]
    E.assign(vs, X[:3, 1])  # a strided column
    assert [v.data for v in vs] == [float(x) for x in X[:3, 1]]
    E.assign(vs, X[1].astype(np.float32))  # converted one by one
    assert [v.data for v in vs] == [float(np.float32(x)) for x in X[1]]
    with pytest.raises(TypeError):
        E.assign(vs, X[:3])  # rows are not numbers
    with pytest.raises(ValueError):
        E.assign(vs, X[:, 0])


def test_assign_errors_assign_nothing(engine):
    E = engine.module
    vs = [engine.Value(1.0), engine.Value(2.0)]
    with pytest.raises(ValueError, match="2 Values but 3 numbers"):
        E.assign(vs, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        E.assign(vs, array.array('d', [1.0]))
    with pytest.raises(TypeError, match="Values"):
        E.assign([vs[0], 3.0], [5.0, 6.0])
    with pytest.raises(TypeError, match="real numbers"):
        E.assign(vs, [5.0, "6"])
    with pytest.raises(TypeError):
        E.assign(vs, [5.0, None])
    with pytest.raises(TypeError):
        E.assign(vs, 5.0)
    assert [v.data for v in vs] == [1.0, 2.0]


def test_replay_with_new_inputs_equals_rebuild(engine):
    # a model evaluated on new inputs through the same graph: assign the input leaves, replay
    random.seed(3)
    model = engine.nn.MLP(2, [4, 4, 1])
    xs = [engine.Value(0.0), engine.Value(0.0)]
    out = model(xs)
    for point in ([0.5, -1.0], [2.0, 0.25], [-0.75, 0.1]):
        engine.module.assign(xs, point)
        assert out.recompute() == model([engine.Value(p) for p in point]).data


def test_recompute_over_a_thinly_spread_graph(engine):
    # a small graph whose leaves sit below many unrelated live nodes (the compiled engine's
    # downward scan gives up and searches breadth-first)
    x = engine.Value(0.5)
    unrelated = [engine.Value(float(i)) * 2 for i in range(100_000)]
    out = (x * 3).tanh() + x
    x.data = 2.0
    assert out.recompute() == math.tanh(6.0) + 2.0
    out.backward()
    out.zero_grad()
    assert x.grad == 0.0
    assert unrelated[5].data == 10.0
