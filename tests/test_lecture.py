"""The steps of the micrograd lecture ("The spelled-out intro to neural networks and backpropagation"),
on both engines: labelled expressions, backprop by hand through `._backward()`, the tanh neuron, tanh
rebuilt from exp and division, and custom ops made by assigning `_backward` to a hand-built node."""
import gc
import math
import weakref

import pytest


# ---- the first expression: L = (a*b + c) * f --------------------------------------------------

def lecture_expression(Value):
    a = Value(2.0, label='a')
    b = Value(-3.0, label='b')
    c = Value(10.0, label='c')
    e = a * b
    e.label = 'e'
    d = e + c
    d.label = 'd'
    f = Value(-2.0, label='f')
    L = d * f
    L.label = 'L'
    return dict(a=a, b=b, c=c, e=e, d=d, f=f, L=L)


# the lecture's numbers, worked out with the chain rule:
# dL/dd = f, dL/df = d, dL/de = dL/dc = dL/dd * 1, dL/da = dL/de * b, dL/db = dL/de * a
LECTURE_DATA = dict(a=2.0, b=-3.0, c=10.0, e=-6.0, d=4.0, f=-2.0, L=-8.0)
LECTURE_GRADS = dict(L=1.0, d=-2.0, f=4.0, e=-2.0, c=-2.0, a=6.0, b=-4.0)


def test_lecture_expression_data_labels_and_ops(engine):
    v = lecture_expression(engine.Value)
    assert {k: x.data for k, x in v.items()} == LECTURE_DATA
    assert {k: x.label for k, x in v.items()} == {k: k for k in v}
    assert {k: x._op for k, x in v.items()} == dict(a='', b='', c='', e='*', d='+', f='', L='*')
    assert v['L']._prev == {v['d'], v['f']}
    assert v['d']._prev == {v['e'], v['c']}
    assert v['e']._prev == {v['a'], v['b']}
    assert all(x.grad == 0.0 for x in v.values())


def test_manual_backprop_node_by_node(engine):
    v = lecture_expression(engine.Value)
    # leaves' _backward does nothing
    for leaf in 'abcf':
        v[leaf]._backward()
    assert all(x.grad == 0.0 for x in v.values())

    # the lecture: seed the output's grad, then call each node's _backward in reverse order
    v['L'].grad = 1.0
    v['L']._backward()
    assert (v['d'].grad, v['f'].grad) == (-2.0, 4.0)
    assert v['e'].grad == v['c'].grad == v['a'].grad == v['b'].grad == 0.0
    v['d']._backward()
    assert (v['e'].grad, v['c'].grad) == (-2.0, -2.0)
    v['e']._backward()
    assert {k: x.grad for k, x in v.items()} == LECTURE_GRADS

    # and backward() on a fresh graph gives the same numbers
    w = lecture_expression(engine.Value)
    w['L'].backward()
    assert {k: x.grad for k, x in w.items()} == LECTURE_GRADS


def test_manual_backward_reads_the_current_grad(engine):
    # _backward applies the chain rule to whatever .grad holds now, and accumulates
    v = lecture_expression(engine.Value)
    v['L'].grad = 0.5
    v['L']._backward()
    v['L']._backward()
    assert (v['d'].grad, v['f'].grad) == (-2.0, 4.0)


def test_bound_backward_survives_its_node_facade(engine):
    # the lecture keeps `fn = node._backward` around; calling it later still works
    Value = engine.Value
    a, b = Value(3.0), Value(4.0)
    fn = (a * b)._backward  # the product's facade is gone, its node lives on in fn
    gc.collect()
    fn()  # grad of the product is 0: adds nothing
    assert (a.grad, b.grad) == (0.0, 0.0)


def test_repr_like_micrograd(engine):
    v = lecture_expression(engine.Value)
    v['L'].backward()
    for x in v.values():
        assert repr(x) == f"Value(data={x.data}, grad={x.grad})"
    assert repr(v['a']) == "Value(data=2.0, grad=6.0)"
    assert repr(engine.Value(0.1)) == "Value(data=0.1, grad=0.0)"
    assert repr(engine.Value(-1e300)) == "Value(data=-1e+300, grad=0.0)"
    assert repr(engine.Value(float('nan'))) == "Value(data=nan, grad=0.0)"


def test_labels_settable_and_default(engine):
    Value = engine.Value
    x = Value(1.0)
    assert x.label == ''
    x.label = 'x'
    assert x.label == 'x'
    y = x * 2
    assert y.label == ''
    y.label = 'y'
    del x
    gc.collect()
    # a label stays with its node, also when the node is only reachable through a parent
    z = y + 1
    del y
    (child,) = [c for c in z._prev if c.label == 'y']
    assert child.data == 2.0
    # positional label (the lecture's signature: Value(data, _children, _op, label))
    w = Value(5.0, (), '', 'w')
    assert (w.label, w._op, w._prev) == ('w', '', set())


# ---- the neuron: o = tanh(x1*w1 + x2*w2 + b) ---------------------------------------------------

def neuron(Value, activation):
    x1 = Value(2.0, label='x1')
    x2 = Value(0.0, label='x2')
    w1 = Value(-3.0, label='w1')
    w2 = Value(1.0, label='w2')
    b = Value(6.8813735870195432, label='b')
    x1w1 = x1 * w1
    x1w1.label = 'x1*w1'
    x2w2 = x2 * w2
    x2w2.label = 'x2*w2'
    x1w1x2w2 = x1w1 + x2w2
    x1w1x2w2.label = 'x1*w1 + x2*w2'
    n = x1w1x2w2 + b
    n.label = 'n'
    o = activation(n)
    o.label = 'o'
    o.backward()
    return dict(x1=x1, x2=x2, w1=w1, w2=w2, b=b, n=n, o=o)


def tanh_op(n):
    return n.tanh()


def tanh_from_exp(n):
    # the lecture's second version: tanh(n) = (e**2n - 1) / (e**2n + 1), out of exp and division
    e = (2 * n).exp()
    return (e - 1) / (e + 1)


def lecture_tanh(x):
    # the lecture's Value.tanh: t = (math.exp(2*x) - 1)/(math.exp(2*x) + 1), backward 1 - t**2
    t = (math.exp(2 * x) - 1) / (math.exp(2 * x) + 1)
    return t, 1 - t**2


def test_neuron_with_tanh(engine):
    v = neuron(engine.Value, tanh_op)
    n = -6.0 + 6.8813735870195432
    t, dn = lecture_tanh(n)
    assert v['n'].data == n
    assert v['o'].data == t == 0.7071067811865476  # the lecture's number (math.tanh: ...477)
    assert v['o']._op == 'tanh'
    assert dn == pytest.approx(0.5, abs=1e-12)
    assert v['n'].grad == dn
    assert v['b'].grad == dn
    assert v['x1'].grad == -3.0 * dn
    assert v['w1'].grad == 2.0 * dn
    assert v['x2'].grad == 1.0 * dn
    assert v['w2'].grad == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_tanh_is_the_lectures_to_the_last_bit(engine, seed):
    # forward and backward of tanh equal the lecture's formulas bit for bit (math.tanh and
    # 1 - t*t differ from them in the last bit for about a third of these inputs)
    import random
    rng = random.Random(seed)
    xs = [rng.uniform(-6, 6) for _ in range(300)] + [rng.uniform(-1e-3, 1e-3) for _ in range(50)]
    for x in xs:
        t, dt = lecture_tanh(x)
        v = engine.Value(x)
        o = v.tanh()
        (o * 3.0).backward()
        assert (o.data, v.grad) == (t, dt * 3.0), x


def test_tanh_does_not_overflow_where_the_lectures_would(engine):
    with pytest.raises(OverflowError):
        lecture_tanh(400.0)
    for x, want in [(400.0, 1.0), (1e308, 1.0), (math.inf, 1.0), (-400.0, -1.0),
                    (-math.inf, -1.0)]:
        v = engine.Value(x)
        o = v.tanh()
        o.backward()
        assert (o.data, v.grad) == (want, 0.0)
    assert math.isnan(engine.Value(math.nan).tanh().data)


def test_tanh_from_exp_and_division_gives_the_same_gradient(engine):
    direct = neuron(engine.Value, tanh_op)
    composite = neuron(engine.Value, tanh_from_exp)
    assert composite['o']._op == '*'  # (e - 1) * (e + 1)**-1
    assert composite['o'].data == pytest.approx(direct['o'].data, abs=1e-15)
    for k in ('x1', 'x2', 'w1', 'w2', 'b', 'n'):
        assert composite[k].grad == pytest.approx(direct[k].grad, abs=1e-12), k
    assert abs(composite['x1'].grad - -1.5) < 1e-12
    assert abs(composite['w1'].grad - 1.0) < 1e-12


def test_tanh_from_exp_matches_reference_bitwise(engine, ref):
    got = neuron(engine.Value, tanh_from_exp)
    want = neuron(ref.Value, tanh_from_exp)
    assert {k: (x.data, x.grad) for k, x in got.items()} == {k: (x.data, x.grad) for k, x in want.items()}


def test_node_used_twice_accumulates(engine):
    # the lecture's bug hunt: b = a + a must give a.grad == 2, not 1
    a = engine.Value(3.0, label='a')
    b = a + a
    b.backward()
    assert (b.data, a.grad) == (6.0, 2.0)
    x = engine.Value(-2.0)
    y = engine.Value(3.0)
    d = x * y
    e = x + y
    f = d * e
    f.backward()
    assert (x.grad, y.grad) == (-3.0, -8.0)


# ---- custom ops: a hand-built node with an assigned _backward ------------------------------------

def my_mul(Value, a, b):
    """micrograd's own __mul__, written by a user: a closure that captures out (a reference cycle)."""
    out = Value(a.data * b.data, (a, b), 'myop')

    def _backward():
        a.grad += b.data * out.grad
        b.grad += a.data * out.grad
    out._backward = _backward
    return out


def test_custom_op_node(engine):
    Value = engine.Value
    a, b = Value(2.0, label='a'), Value(-3.0, label='b')
    out = my_mul(Value, a, b)
    assert out._op == 'myop'
    assert out._prev == {a, b}
    assert out.data == -6.0
    L = (out + 1.0) * out  # the custom node used twice, behind built-in ops
    L.backward()
    # dL/dout = 2*out + 1 = -11
    assert out.grad == -11.0
    assert (a.grad, b.grad) == (-11.0 * -3.0, -11.0 * 2.0)


def test_custom_op_closure_cycle_is_freed(engine):
    Value = engine.Value
    gc.collect()
    baseline = engine.arena_stats()['live'] if engine.arena_stats else None
    a, b = Value(2.0), Value(5.0)
    out = my_mul(Value, a, b)
    refs = [weakref.ref(x) for x in (a, b, out)]
    del a, b, out
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    if baseline is not None:
        assert engine.arena_stats()['live'] == baseline


def test_custom_op_inside_a_graph_then_freed(engine):
    Value = engine.Value
    gc.collect()
    baseline = engine.arena_stats()['live'] if engine.arena_stats else None
    a, b = Value(2.0), Value(5.0)
    out = my_mul(Value, a, b)
    r_out = weakref.ref(out)
    y = out.tanh() * 3 + out
    del out  # only y (and the closure) keep the custom node now
    gc.collect()
    y.backward()
    t, dt = lecture_tanh(10.0)
    dout = 3 * dt + 1
    assert a.grad == pytest.approx(5.0 * dout, rel=1e-15)
    assert b.grad == pytest.approx(2.0 * dout, rel=1e-15)
    r_y, r_a = weakref.ref(y), weakref.ref(a)
    del y, a, b
    gc.collect()
    assert (r_out(), r_y(), r_a()) == (None, None, None)
    if baseline is not None:
        assert engine.arena_stats()['live'] == baseline


def test_reassigning_backward_replaces_it(engine):
    Value = engine.Value
    a = Value(3.0)
    out = Value(a.data ** 2, (a,), 'sq')
    calls = []
    out._backward = lambda: calls.append('old')

    def _backward():
        calls.append('new')
        a.grad += 2 * a.data * out.grad
    out._backward = _backward
    out.backward()
    assert calls == ['new']
    assert a.grad == 6.0
    with pytest.raises(TypeError):
        out._backward = 42  # not callable


def test_builtin_op_with_assigned_backward(engine):
    # assigning _backward on the result of a built-in op replaces its chain rule
    Value = engine.Value
    a, b = Value(2.0), Value(3.0)
    c = a * b
    c._backward = lambda: setattr(a, 'grad', a.grad + 100.0)
    (c + 0).backward()
    assert (a.grad, b.grad) == (100.0, 0.0)
    assert c._op == '*'


def test_hand_built_node_without_backward_is_a_constant(engine):
    # Value(x, (a, b), 'op') with no _backward assigned passes no gradient (micrograd: lambda: None)
    Value = engine.Value
    a, b = Value(2.0), Value(3.0)
    out = Value(7.0, (a, b), 'op')
    (out * a).backward()
    assert a.grad == 7.0 and b.grad == 0.0
    assert out.grad == 2.0


class Boom(Exception):
    pass


def test_exception_in_custom_backward_propagates(engine):
    Value = engine.Value
    gc.collect()
    baseline = engine.arena_stats() if engine.arena_stats else None
    a, b = Value(2.0), Value(3.0)
    out = Value(a.data * b.data, (a, b), 'boom')

    def _backward():
        raise Boom("from _backward")
    out._backward = _backward
    L = (out + a) * 2
    with pytest.raises(Boom, match="from _backward"):
        L.backward()
    # the nodes above the failing one got their grads before it ran
    assert (L.grad, out.grad) == (1.0, 2.0)
    assert b.grad == 0.0
    del a, b, out, L, _backward
    gc.collect()

    # the engine is usable afterwards: a new graph gives the right gradients ...
    v = lecture_expression(Value)
    v['L'].backward()
    assert {k: x.grad for k, x in v.items()} == LECTURE_GRADS
    del v
    gc.collect()
    if baseline is not None:
        # ... nothing leaked, and the arena still reclaims dead slots (no sweep left pinned:
        # a pinned arena neither gives back its top slots nor compacts, it only grows)
        assert engine.arena_stats()['live'] == baseline['live']
        anchor = Value(0.0)  # a live node: the arena cannot simply start over when all is dead
        before = engine.arena_stats()['high_water']
        for _ in range(20):
            x = Value(1.0)
            for _ in range(2000):
                x = x * 1.0
            x.backward()
            del x
        assert engine.arena_stats()['high_water'] <= before + 2 * 2001
        assert anchor.data == 0.0
        del anchor
        assert engine.arena_stats()['live'] == baseline['live']


def test_exception_in_backward_twice_in_a_row(engine):
    Value = engine.Value
    a = Value(1.0)
    out = Value(1.0, (a,), 'bad')
    out._backward = lambda: 1 / 0
    y = out * 2
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            y.backward()
    ok = a * 3
    ok.backward()
    assert a.grad == 3.0


def test_custom_backward_creating_values(engine, ref):
    """A _backward that builds new Values -- so many that the compiled arena must grow while the
    sweep runs -- still gives the right gradients."""
    stats = engine.arena_stats
    # enough new nodes to outgrow the arena as it is now (3 nodes each: leaf, constant, '*')
    n_junk = min(stats()['capacity'] // 2 + 1, 300_000) if stats else 2000
    cap_before = stats()['capacity'] if stats else None

    def build(Value, n_junk):
        xs = [Value(0.1 * i + 0.5) for i in range(5)]
        acc = xs[0]
        for x in xs[1:]:
            prod = Value(acc.data * x.data, (acc, x), 'gmul')

            def _backward(prod=prod, acc=acc, x=x):
                # compute the local gradients as Values, the slow way, among lots of others
                junk = [Value(float(k)) * prod.grad for k in range(n_junk)]
                ga = Value(x.data) * prod.grad
                gb = Value(acc.data) * Value(prod.grad)
                acc.grad += ga.data
                x.grad += gb.data
                assert junk[-1].data == (n_junk - 1) * prod.grad
            prod._backward = _backward
            acc = prod.tanh() + acc
        acc.backward()
        return [x.grad for x in xs], acc.data

    got = build(engine.Value, n_junk)
    if stats:
        assert stats()['capacity'] > cap_before  # the arena did grow during backward()
    want = build(ref.Value, 10)
    assert got == want

    # the same graph with built-in ops: same numbers up to rounding
    Value = engine.Value
    xs = [Value(0.1 * i + 0.5) for i in range(5)]
    acc = xs[0]
    for x in xs[1:]:
        acc = (acc * x).tanh() + acc
    acc.backward()
    assert acc.data == got[1]
    assert [x.grad for x in xs] == pytest.approx(got[0], rel=1e-12)


def test_backward_twice_accumulates_like_micrograd(engine):
    """Calling backward() twice: the root's grad is reset to 1, every other grad accumulates --
    and an intermediate node's accumulated grad flows on in the second pass, exactly as in
    micrograd (so the leaves do not simply double)."""
    v = lecture_expression(engine.Value)
    v['L'].backward()
    v['L'].backward()
    # second pass by hand: d += f*1 = -4; e, c += d.grad = -6; a += b*e.grad; b += a*e.grad
    got = {k: x.grad for k, x in v.items()}
    assert got == dict(L=1.0, d=-4.0, f=8.0, e=-6.0, c=-6.0, a=6.0 + 18.0, b=-4.0 - 12.0)

    micrograd_engine = pytest.importorskip("micrograd.engine")
    U = micrograd_engine.Value
    a, b, c, f = U(2.0), U(-3.0), U(10.0), U(-2.0)
    e = a * b
    d = e + c
    L = d * f
    L.backward()
    L.backward()
    upstream = dict(a=a, b=b, c=c, e=e, d=d, f=f, L=L)
    assert got == {k: float(x.grad) for k, x in upstream.items()}


def test_backward_from_an_inner_node(engine):
    # backward() from a node in the middle touches only that node's subgraph
    v = lecture_expression(engine.Value)
    v['d'].backward()
    assert (v['d'].grad, v['e'].grad, v['c'].grad, v['a'].grad, v['b'].grad) == (1.0, 1.0, 1.0, -3.0, 2.0)
    assert (v['L'].grad, v['f'].grad) == (0.0, 0.0)


def test_custom_op_chain_freed_in_one_collection(engine):
    """A chain of custom-op nodes, each closure holding its own node and its children (micrograd's
    pattern): one gc.collect() frees all of it, as it does for micrograd's own graphs."""
    Value = engine.Value
    while gc.collect():  # garbage of earlier tests may need several passes
        pass
    baseline = engine.arena_stats()['live'] if engine.arena_stats else None
    x = Value(1.0)
    refs = [weakref.ref(x)]
    for _ in range(5):
        x = my_mul(Value, x, Value(1.5))
        refs.append(weakref.ref(x))
    x.backward()
    assert refs[0]().grad == 1.5 ** 5
    del x
    try:
        gc.collect()
        assert [r() for r in refs] == [None] * 6
        if baseline is not None:
            assert engine.arena_stats()['live'] == baseline
    finally:
        while gc.collect():  # if not, free it anyway for the tests that follow
            pass


def test_tanh_backward_of_a_huge_data_overflows_as_the_lectures(engine):
    # the lecture's backward computes t**2 with Python's **: a tanh whose data was set huge
    # overflows there, and here, on both engines
    v = engine.Value(0.5)
    o = v.tanh()
    o.data = 1e300
    with pytest.raises(OverflowError):
        o.backward()
