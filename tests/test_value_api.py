"""The Value object as Python code sees it, on both engines: subclassing, extra attributes, copy and
pickle, weak references, identity hashing, the data/grad setters, mutation between backward passes,
and several threads building and back-propagating graphs at once."""
import copy
import fractions
import gc
import math
import os
import pickle
import random
import subprocess
import sys
import threading
import time
import weakref

import pytest

import micrograd_fast.reference

# ---- subclasses, made once per engine and registered here by name so pickle can find them -----

_subclasses = {}


def my_value_class(Value):
    """class MyValue(Value) with an extra constructor argument, a method and a new op."""
    if Value in _subclasses:
        return _subclasses[Value]

    class MyValue(Value):
        def __init__(self, data, _children=(), _op='', label='', tag=None):
            super().__init__(data, _children, _op, label)
            self.tag = tag

        def double(self):
            return self * 2

        def cube(self):  # a new op, the way users add one: a hand-built node and its backward
            out = MyValue(self.data ** 3, (self,), 'cube', tag='cubed')

            def _backward():
                self.grad += 3 * self.data ** 2 * out.grad
            out._backward = _backward
            return out

    name = "MyValue_" + ("py" if Value is micrograd_fast.reference.Value else "c")
    MyValue.__name__ = MyValue.__qualname__ = name
    globals()[name] = MyValue
    _subclasses[Value] = MyValue
    return MyValue


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "**"])
def test_a_value_and_a_subclass_instance_on_the_right(engine, op):
    """Python asks the right operand's reflected operator first when its class is a subclass of
    the left one's: y - w with w a Param(Value) is micrograd's y + (-w), not a refusal."""
    class Param(engine.Value):
        pass

    y, w = engine.Value(5.0), Param(2.0)
    out = {"+": lambda: y + w, "-": lambda: y - w, "*": lambda: y * w,
           "/": lambda: y / w, "**": lambda: y ** w}[op]()
    data, dy, dw = {"+": (7.0, 1.0, 1.0), "-": (3.0, 1.0, -1.0), "*": (10.0, 2.0, 5.0),
                    "/": (2.5, 0.5, -1.25), "**": (25.0, 10.0, 25.0 * math.log(5.0))}[op]
    assert type(out) is engine.Value and out.data == data
    out.backward()
    assert y.grad == dy and w.grad == pytest.approx(dw, rel=1e-15)
    # called directly, the reflected operators give the same numbers
    if op == "-":
        assert w.__rsub__(y).data == 3.0 and w.__rsub__(y)._op == '+'
        assert {c._op for c in w.__rsub__(y)._prev} == {'', '*'}  # y and w * -1
    if op == "/":
        assert w.__rtruediv__(y).data == 2.5


def test_subclass_instances(engine):
    Value = engine.Value
    MyValue = my_value_class(Value)
    a = MyValue(2.0, label='a', tag='first')
    b = MyValue(-3.0, tag='second')
    assert isinstance(a, Value) and isinstance(a, MyValue)
    assert (a.data, a.grad, a.label, a.tag, b.tag) == (2.0, 0.0, 'a', 'first', 'second')
    assert repr(a) == "Value(data=2.0, grad=0.0)"

    # built-in ops on subclass instances give plain Values, as micrograd's do
    c = a * b + a.double() - b / a
    assert type(c) is Value
    assert c.data == 2.0 * -3.0 + 4.0 - (-3.0 * 2.0 ** -1)
    d = a.cube()
    assert type(d) is MyValue and d.tag == 'cubed' and d._op == 'cube'
    assert d._prev == {a}
    L = c * d
    L.backward()
    # dL/da = d*(b + 2 + b/a**2) + c*3a**2 ; dL/db = d*(a - 1/a)
    assert a.grad == pytest.approx(8.0 * (-3.0 + 2.0 + -3.0 / 4.0) + c.data * 12.0, rel=1e-15)
    assert b.grad == pytest.approx(8.0 * (2.0 - 0.5), rel=1e-15)
    # and mixed with plain Values and numbers on either side
    e = 1.5 * a + Value(1.0) - 2 ** a.double()
    assert type(e) is Value
    assert e.data == 1.5 * 2.0 + 1.0 - 2.0 ** 4.0


def operator_calls(Value):
    """Which overridden primary operators (__add__, __mul__) the derived ones go through."""
    calls = []

    class Logged(Value):
        def __add__(self, other):
            calls.append('add')
            return super().__add__(other)

        def __mul__(self, other):
            calls.append('mul')
            return super().__mul__(other)

        def __repr__(self):
            return f"Logged({self.data})"

    x = Logged(2.0)
    results = []
    for name, op in [("x+1", lambda: x + 1), ("1+x", lambda: 1 + x), ("x-1", lambda: x - 1),
                     ("1-x", lambda: 1 - x), ("-x", lambda: -x), ("3*x", lambda: 3 * x),
                     ("x/2", lambda: x / 2.0), ("2/x", lambda: 2.0 / x)]:
        del calls[:]
        results.append((name, op().data, list(calls)))
    assert repr(x) == "Logged(2.0)"
    return results


def test_subclass_overriding_an_operator(engine, ref):
    """micrograd writes the derived operators with the primary ones (other + self, self * -1 ...),
    so a subclass that overrides __add__ or __mul__ sees every derived use too."""
    got = operator_calls(engine.Value)
    assert got == operator_calls(ref.Value)
    assert got[:2] == [("x+1", 3.0, ['add']), ("1+x", 3.0, ['add'])]
    micrograd_engine = pytest.importorskip("micrograd.engine")
    assert got == operator_calls(micrograd_engine.Value)


def test_subclass_facade_is_kept_in_the_graph(engine):
    """A subclass instance reached again through _prev is the same object, with its type and its
    extra attributes -- as in micrograd, where _prev holds the objects themselves."""
    Value = engine.Value
    MyValue = my_value_class(Value)
    y = MyValue(3.0, tag='kept') * 2
    # the subclass leaf has no name left but lives in y's graph
    gc.collect()
    (leaf,) = [c for c in y._prev if c.data == 3.0]
    assert type(leaf) is MyValue
    assert leaf.tag == 'kept'


def test_extra_attributes(engine):
    Value = engine.Value
    p = Value(1.0)
    p.m = 0.0  # AdamW state, as karpathy's newer micrograd keeps it
    p.v = 0.0
    assert (p.m, p.v) == (0.0, 0.0)
    assert p.__dict__['m'] == 0.0 and vars(p)['v'] == 0.0
    p.__dict__['n'] = 7
    assert p.n == 7
    del p.m
    with pytest.raises(AttributeError):
        p.m
    with pytest.raises(AttributeError):
        Value(2.0).no_such_attribute
    # on a non-leaf too
    q = p * 2
    q.note = 'hidden'
    assert q.note == 'hidden'
    # an attribute may even refer back to its Value (a cycle, collected by the gc)
    r = weakref.ref(q)
    q.me = q
    del q
    gc.collect()
    assert r() is None


def test_adamw_style_state_on_parameters(engine, ref):
    # one AdamW-like update with per-parameter state kept as attributes: same numbers on both
    def run(nn, Value):
        random.seed(4)
        model = nn.MLP(2, [3, 1])
        for p in model.parameters():
            p.m, p.v = 0.0, 0.0
        for t in range(1, 4):
            loss = (model([Value(0.5), Value(-1.5)]) - 1.0) ** 2
            model.zero_grad()
            loss.backward()
            for p in model.parameters():
                p.m = 0.9 * p.m + 0.1 * p.grad
                p.v = 0.999 * p.v + 0.001 * p.grad ** 2
                m_hat = p.m / (1 - 0.9 ** t)
                v_hat = p.v / (1 - 0.999 ** t)
                p.data -= 0.01 * (m_hat / (v_hat ** 0.5 + 1e-8) + 0.01 * p.data)
        return [(p.data, p.m, p.v) for p in model.parameters()]

    assert run(engine.nn, engine.Value) == run(ref.nn, ref.Value)


def test_extra_attributes_kept_on_an_inner_node(engine):
    """An inner node's attribute stays while the node is in a live graph, as micrograd's objects do."""
    Value = engine.Value
    a, b = Value(2.0), Value(3.0)
    y = a * b
    y.m = 5.0
    z = y + 1
    del y
    gc.collect()
    (inner,) = [c for c in z._prev if c._op == '*']
    assert inner.m == 5.0


# ---- copy, deepcopy, pickle --------------------------------------------------------------------

def _roundtrips():
    return {
        "copy": copy.copy,
        "deepcopy": copy.deepcopy,
        "pickle": lambda v: pickle.loads(pickle.dumps(v)),
        "pickle0": lambda v: pickle.loads(pickle.dumps(v, protocol=0)),
    }


@pytest.mark.parametrize("how", list(_roundtrips()))
def test_copy_and_pickle_of_a_leaf(engine, how):
    Value = engine.Value
    fn = _roundtrips()[how]
    v = Value(2.5, label='w')
    v.grad = -1.25
    v.m = 0.5
    c = fn(v)
    assert c is not v
    assert type(c) is Value
    assert (c.data, c.grad, c.label, c._op, c._prev, c.m) == (2.5, -1.25, 'w', '', set(), 0.5)
    # independent of the original
    c.data = 1.0
    c.grad = 0.0
    c.label = 'copy'
    assert (v.data, v.grad, v.label) == (2.5, -1.25, 'w')
    # and usable
    (c * 3).backward()
    assert c.grad == 3.0 and v.grad == -1.25


@pytest.mark.parametrize("how", list(_roundtrips()))
def test_copy_and_pickle_of_a_subclass_leaf(engine, how):
    MyValue = my_value_class(engine.Value)
    v = MyValue(4.0, label='s', tag='t')
    v.grad = 2.0
    c = _roundtrips()[how](v)
    assert type(c) is MyValue
    assert (c.data, c.grad, c.label, c.tag) == (4.0, 2.0, 's', 't')


def slotted_value_class(Value):
    """A subclass that keeps its own attributes in __slots__ (one of them name-mangled)."""
    name = "Slotted_" + ("py" if Value is micrograd_fast.reference.Value else "c")
    if name not in globals():
        class Slotted(Value):
            __slots__ = ("tag", "__secret", "unset")

            def secret(self):
                return self.__secret

            def hide(self, x):
                self.__secret = x

        Slotted.__name__ = Slotted.__qualname__ = name
        globals()[name] = Slotted
    return globals()[name]


@pytest.mark.parametrize("how", list(_roundtrips()))
def test_copy_and_pickle_keep_attributes_in_slots(engine, how):
    """As micrograd's plain-object Values: a subclass's __slots__ attributes are copied too (a
    slot never set stays unset)."""
    Slotted = slotted_value_class(engine.Value)
    v = Slotted(1.5, label='p')
    v.tag = 'weight'
    v.hide(7)
    c = _roundtrips()[how](v)
    assert type(c) is Slotted
    assert (c.data, c.label, c.tag, c.secret()) == (1.5, 'p', 'weight', 7)
    assert not hasattr(c, "unset")


def _describe(v):
    """What copy/pickle kept of a Value: its numbers, label, op and its children's numbers."""
    return (v.data, v.grad, v.label, v._op, sorted(c.data for c in v._prev))


@pytest.mark.parametrize("how", list(_roundtrips()))
def test_copy_and_pickle_of_an_inner_node_agree_with_reference(engine, ref, how):
    """Whatever copying a non-leaf means, both engines must mean the same."""
    fn = _roundtrips()[how]

    def run(Value):
        a, b = Value(2.0, label='a'), Value(3.0, label='b')
        y = a * b
        y.label = 'y'
        y.grad = 0.5
        c = fn(y)
        seen = _describe(c)
        (c * 10).backward()  # where does its gradient go?
        return seen, c.grad, a.grad, b.grad

    assert run(engine.Value) == run(ref.Value)


def test_pickle_of_a_list_of_parameters(engine):
    # saving a model's weights as pickled Values: shared Values stay shared within one pickle
    Value = engine.Value
    w = Value(0.25)
    blob = pickle.dumps([w, w, Value(-1.0)])
    ws = pickle.loads(blob)
    assert [x.data for x in ws] == [0.25, 0.25, -1.0]
    assert ws[0] is ws[1]


# ---- identity: weakref, hash, equality ---------------------------------------------------------

def test_weakref(engine):
    Value = engine.Value
    v = Value(1.0)
    r = weakref.ref(v)
    assert r() is v
    ws = weakref.WeakSet([v])
    wd = weakref.WeakValueDictionary({'v': v})
    assert v in ws and wd['v'] is v
    del v
    assert r() is None
    assert len(ws) == 0 and 'v' not in wd
    # a weakref to an inner node dies with its last facade, not with its node
    a = Value(2.0)
    y = a * 3
    ry = weakref.ref(y)
    z = y + 1
    del y
    gc.collect()
    if ry() is not None:  # the reference engine: the node object is the facade, z keeps it
        assert ry() in z._prev
    del z
    gc.collect()
    assert ry() is None


def test_hash_and_equality_are_identity(engine):
    Value = engine.Value
    a, b = Value(1.0), Value(1.0)
    assert a == a and a != b and not (a == b)
    assert hash(a) == hash(a) and hash(a) != hash(b)
    assert a != 1.0 and not (a == 1.0)
    assert len({a, b, a}) == 2
    d = {a: 'a', b: 'b'}
    assert d[a] == 'a' and d[b] == 'b'
    # micrograd has no ordering
    with pytest.raises(TypeError):
        a < b
    with pytest.raises(TypeError):
        a <= 1.0
    # the identity of a Value does not change when it is mutated or used in a graph
    h = hash(a)
    a.data = 5.0
    a.grad = 1.0
    y = a * b
    y.backward()
    assert hash(a) == h and a in d
    assert a in y._prev and b in y._prev


def test_prev_returns_the_same_objects(engine):
    Value = engine.Value
    a, b = Value(1.0), Value(2.0)
    y = a + b
    p1, p2 = y._prev, y._prev
    assert p1 == p2 == {a, b}
    # a child without a facade gets one, which stays while someone holds it
    z = y * 3
    (c3,) = [c for c in z._prev if c is not y]
    assert c3.data == 3.0
    again = [c for c in z._prev if c is not y]
    assert again == [c3]


# ---- data and grad ---------------------------------------------------------------------------

@pytest.mark.parametrize("given, stored", [
    (2, 2.0), (True, 1.0), (-0, 0.0), (fractions.Fraction(1, 4), 0.25), (1e308, 1e308),
    (float('inf'), float('inf')),
])
def test_data_and_grad_setters_store_floats(engine, given, stored):
    Value = engine.Value
    v = Value(given)
    assert v.data == stored and type(v.data) is float
    v.data = given
    v.grad = given
    assert (v.data, v.grad) == (stored, stored)
    assert type(v.data) is float and type(v.grad) is float
    assert type(Value(3).grad) is float
    v.grad = 0  # zero_grad's `p.grad = 0`
    assert v.grad == 0.0 and type(v.grad) is float


def test_numpy_scalars_accepted(engine):
    np = pytest.importorskip("numpy")
    Value = engine.Value
    v = Value(np.float32(0.5))
    v.grad = np.int64(3)
    assert (v.data, v.grad) == (0.5, 3.0)
    assert type(v.data) is float and type(v.grad) is float


@pytest.mark.parametrize("bad", ["1.0", None, [1.0], 1j, object()])
def test_setters_reject_non_numbers(engine, bad):
    v = engine.Value(1.0)
    with pytest.raises(TypeError):
        v.data = bad
    with pytest.raises(TypeError):
        v.grad = bad
    assert (v.data, v.grad) == (1.0, 0.0)


def test_inplace_update_of_data(engine):
    Value = engine.Value
    p = Value(1.0)
    (p * 4).backward()
    p.data += -0.1 * p.grad  # the training loop's update
    assert p.data == 1.0 - 0.4
    p.data -= 0.5
    assert p.data == 1.0 - 0.4 - 0.5


def mutation_graph(Value):
    """Build once, back-propagate, change leaf data, zero grads, back-propagate again."""
    a, b, c = Value(2.0), Value(-3.0), Value(0.5)
    y = (a * b + c ** 2) * a + (b - c).relu() + a / c
    y.backward()
    first = [a.grad, b.grad, c.grad]
    a.data, b.data, c.data = 1.5, 4.0, -2.0  # the graph's inner data stay as they were
    for v in (a, b, c):
        v.grad = 0
    y.backward()
    second = [a.grad, b.grad, c.grad]
    return y.data, first, second


def test_data_mutation_between_backward_passes(engine, ref):
    got = mutation_graph(engine.Value)
    assert got == mutation_graph(ref.Value)
    _, first, second = got
    assert first != second
    # backward reads the leaves' current data: e.g. d(a*b)/da now uses b = 4
    Value = engine.Value
    a, b = Value(2.0), Value(3.0)
    y = a * b
    y.backward()
    assert a.grad == 3.0
    b.data = 4.0
    a.grad = 0.0
    y.backward()
    assert a.grad == 4.0

    micrograd_engine = pytest.importorskip("micrograd.engine")
    up = mutation_graph(micrograd_engine.Value)
    assert got[0] == up[0]
    assert got[1] == pytest.approx(up[1], rel=1e-12)
    assert got[2] == pytest.approx(up[2], rel=1e-12)


# ---- threads -------------------------------------------------------------------------------------

def thread_workload(engine, seed, rounds):
    """A small MLP's forward and backward, `rounds` times, plus a custom-op node whose Python
    backward runs inside the sweep (where another thread can take over)."""
    Value, nn = engine.Value, engine.nn
    rng = random.Random(seed)
    state = random.getstate()  # nn draws from the global generator: build under a lock
    with _init_lock:
        random.seed(seed)
        model = nn.MLP(3, [6, 6, 1])
        random.setstate(state)
    results = []
    for _ in range(rounds):
        xs = [Value(rng.uniform(-2, 2)) for _ in range(3)]
        out = model(xs)
        sq = Value(out.data * out.data, (out,), 'square')

        def _backward(out=out, sq=sq):
            junk = Value(1.0) * sq.grad  # new nodes, made during the sweep
            time.sleep(0)  # let another thread run (and back-propagate) in the middle of this sweep
            out.grad += 2 * out.data * junk.data
        sq._backward = _backward
        # the custom node sits under more built-in nodes, so the sweep goes on after it
        loss = (sq + (xs[0] * xs[1]).tanh()) * 0.5 + (xs[2] * sq).tanh()
        model.zero_grad()
        loss.backward()
        results.append((loss.data, [p.grad for p in model.parameters()], [x.grad for x in xs]))
        assert loss.data == loss.data  # no nan: equal results below mean something
        for p in model.parameters():
            p.data -= 0.01 * p.grad
    return results


_init_lock = threading.Lock()


@pytest.mark.slow
def test_threads_build_and_backprop_independent_graphs(engine):
    seeds = [1, 2, 3, 4]
    rounds = 200
    expected = {s: thread_workload(engine, s, rounds) for s in seeds}

    got, errors = {}, []

    def worker(s):
        try:
            got[s] = thread_workload(engine, s, rounds)
        except BaseException as e:  # report it in the main thread
            errors.append(e)

    while gc.collect():  # garbage of earlier tests may need several passes
        pass
    baseline = engine.arena_stats()['live'] if engine.arena_stats else None
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=worker, args=(s,)) for s in seeds]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    for s in seeds:
        assert got[s] == expected[s], s
    gc.collect()
    if baseline is not None:  # the threads' graphs and models are all freed
        assert engine.arena_stats()['live'] == baseline


@pytest.mark.parametrize("name", ["data", "grad", "_backward", "_prev"])
def test_deleting_a_value_attribute_is_an_attribute_error(engine, name):
    # as for any property without a deleter (micrograd's are plain attributes: deleting one
    # there only breaks the Value later); the Value is left as it was
    v = engine.Value(1.5) * 2
    v.grad = 3.0
    with pytest.raises(AttributeError):
        delattr(v, name)
    assert (v.data, v.grad, v._op) == (3.0, 3.0, '*')
    v.backward()
    assert v.grad == 1.0


@pytest.mark.parametrize("name", ["label", "_op"])
def test_deleting_a_label_or_op_name_gives_the_default(engine, name):
    # as the reference engine's plain attributes over the class defaults: '' (the numbers and
    # the graph stay as they were)
    a = engine.Value(1.5, label="a")
    v = a * 2
    v.label = "v"
    delattr(v, name)
    delattr(a, "label")
    assert getattr(v, name) == "" and a.label == ""
    assert (v.label, v._op) == ("", "*") if name == "label" else ("v", "")
    v.backward()
    assert (v.data, a.grad) == (3.0, 2.0)


class _OnlyFloat:
    """Not a number type, but float() accepts it."""

    def __float__(self):
        return 1.5


@pytest.mark.parametrize("other", [__import__("decimal").Decimal("1.5"), _OnlyFloat()],
                         ids=["Decimal", "only__float__"])
def test_operands_that_float_refuses_are_type_errors(engine, other):
    # 2.0 + Decimal('1.5') is a TypeError, and so is every operator of a Value with one (the
    # operators return NotImplemented); as data, float() decides: Value(Decimal('1.5')) is 1.5
    v = engine.Value(2.0)
    with pytest.raises(TypeError):
        2.0 + other
    ops = [lambda: v + other, lambda: other + v, lambda: v - other, lambda: other - v,
           lambda: v * other, lambda: other * v, lambda: v / other, lambda: other / v,
           lambda: v ** other, lambda: other ** v]
    for op in ops:
        with pytest.raises(TypeError):
            op()
    assert engine.Value(other).data == 1.5
    assert (v.data, v.grad) == (2.0, 0.0)
    # so do the fused ops, micrograd's w * x inside a neuron: Neuron(1)([Decimal]) raises there
    for fused in (lambda: engine.dot([v], [other], 0.0), lambda: engine.dot([other], [v], v),
                  lambda: engine.sum_values([v, other]), lambda: engine.nn.Neuron(1)([other])):
        with pytest.raises(TypeError, match="takes Values or real numbers"):
            fused()


class _ReflectsBack:
    """An operand whose reflected operators answer anything: Python must not ask them twice."""
    def __add__(self, other):
        return NotImplemented

    __mul__ = __add__

    def __radd__(self, other):
        return "radd"

    __rmul__ = __radd__


def test_an_operand_the_value_refuses_is_not_asked_again(engine):
    """other + v with other's __add__ giving up: v's __radd__ returns NotImplemented (float's
    would) -- it does not turn it into v + other, which would ask other's __radd__ again."""
    v = engine.Value(2.0)
    with pytest.raises(TypeError):
        _ReflectsBack() + v
    with pytest.raises(TypeError):
        _ReflectsBack() * v
    assert v + _ReflectsBack() == "radd"  # (v.__add__ refuses: then other's __radd__, once)


def test_a_failed_reinit_changes_nothing(engine):
    """Value.__init__ called again with a bad child raises before it sets anything."""
    a = engine.Value(1.0)
    with pytest.raises(TypeError):
        engine.Value.__init__(a, 3.0, (engine.Value(1.0), 5))
    assert (a.data, a.grad, a._prev, a._op) == (1.0, 0.0, set(), '')


def test_real_number_operands_are_taken(engine):
    # numbers.Real: Fraction and numpy's numbers, as float's own operators take them
    np = pytest.importorskip("numpy")
    v = engine.Value(2.0)
    for other, x in [(fractions.Fraction(1, 2), 0.5), (np.float32(1.5), 1.5), (np.int64(3), 3.0),
                     (True, 1.0)]:
        assert (v + other).data == 2.0 + x
        assert (other - v).data == x - 2.0
        assert (v * other).data == 2.0 * x
        assert (other / v).data == x * 2.0**-1


def _own_init_subclass(Value):
    """A subclass with micrograd's __init__ copied in (no super().__init__), and a * of its own
    written the lecture's way."""

    class V2(Value):
        def __init__(self, data, _children=(), _op='', label=''):
            self.data = data
            self.grad = 0
            self._backward = lambda: None
            self._prev = set(_children)
            self._op = _op
            self.label = label

        def __mul__(self, other):
            other = other if isinstance(other, V2) else V2(other)
            out = V2(self.data * other.data, (self, other), '*')

            def _backward():
                self.grad += other.data * out.grad
                other.grad += self.data * out.grad
            out._backward = _backward
            return out

    return V2


def test_subclass_with_its_own_init(engine):
    V2 = _own_init_subclass(engine.Value)
    a, b = V2(2.0, label='a'), V2(-3.0, label='b')
    c = a * b  # V2's own *: a hand-built node with a Python backward
    d = c + a  # Value's +
    e = (d * 2).relu()
    assert (type(c), c.data, c._op, c._prev) == (V2, -6.0, '*', {a, b})
    assert (d.data, d._op, d._prev) == (-4.0, '+', {c, a})
    assert (a.label, b.label, a._op, a._prev) == ('a', 'b', '', set())
    (d * 2).backward()
    assert (a.grad, b.grad, c.grad) == (2.0 * (-3.0 + 1.0), 2.0 * 2.0, 2.0)
    assert e.data == 0.0
    # a leaf made this way works as any leaf
    z = V2(0.5)
    w = z * z + z
    w.backward()
    assert (w.data, z.grad) == (0.75, 2.0)


def test_prev_cannot_change_the_children_of_a_made_node(engine):
    a, b = engine.Value(2.0), engine.Value(3.0)
    c = a * b
    with pytest.raises(AttributeError):
        c._prev = {a}
    assert c._prev == {a, b}
    a._prev = set()  # a leaf given no children stays a leaf
    assert a._prev == set() and (a.data, a._op) == (2.0, '')


@pytest.mark.parametrize("pure", ["0", "1"])
def test_backward_assigned_to_a_leaf_before_any_other_node(pure):
    # the first node a process makes is a leaf that gets a _backward (no edge array exists yet)
    code = ("from micrograd_fast import Value\n"
            "v = Value(1.5)\n"
            "v._backward = lambda: None\n"
            "y = v * 2\n"
            "y.backward()\n"
            "print(v.data, v.grad, v._prev)\n")
    env = dict(os.environ, MICROGRAD_FAST_PURE_PYTHON=pure)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert (out.returncode, out.stdout) == (0, "1.5 2.0 set()\n"), out.stderr


def test_a_foreign_value_in_dot_is_named_with_its_module(engine):
    # e.g. upstream micrograd's Value fed to our Neuron: the message says whose it is
    import types
    foreign = types.SimpleNamespace(data=1.0)
    with pytest.raises(TypeError, match=r"dot\(\) takes Values or real numbers, not 'types.SimpleNamespace'"):
        engine.dot([foreign], [engine.Value(2.0)], 0.0)
    with pytest.raises(TypeError, match=r"sum_values\(\) takes Values or real numbers, not 'str'"):
        engine.sum_values([engine.Value(2.0), "x"])
    with pytest.raises(TypeError, match="not 'types.SimpleNamespace'"):
        engine.nn.Neuron(1)([foreign])


def test_op_and_label_are_kept_as_given(engine):
    # micrograd stores _op and label as given (a str in practice, but anything goes)
    v = engine.Value(1.0, (), 5, label=("x", 1))
    assert (v._op, v.label) == (5, ("x", 1))
    w = engine.Value(2.0, (v,), None)
    w._backward = lambda: None  # (turning it into a Python-backward node keeps its name)
    assert w._op is None and w._prev == {v}
    v._op = b"op"
    assert v._op == b"op"


def test_power_node_is_named_as_micrograd_names_it(engine):
    # micrograd: f'**{other}' -- whatever the exponent's own text is
    np = pytest.importorskip("numpy")
    x = engine.Value(1.0)
    for k in (2, 2.0, 0.5, -1, True, 2**53, 2**53 + 1, -(2**53) - 1, 10**20, 1e20,
              np.float64(2.0), np.int64(3), np.float32(0.1), fractions.Fraction(1, 2)):
        assert (x ** k)._op == f"**{k}", k


class _ForeignValue:
    """Another autograd library's scalar, as upstream micrograd's Value behaves: it wraps any
    other operand as its data (so our Value would end up inside it, out of our graph)."""

    def __init__(self, data):
        self.data, self.grad = data, 0.0

    def backward(self):
        pass

    def __radd__(self, other):
        return _ForeignValue(other)

    __rmul__ = __rsub__ = __rtruediv__ = __rpow__ = __radd__


def test_another_librarys_value_is_refused_not_wrapped(engine):
    v = engine.Value(2.0)
    foreign = _ForeignValue(3.0)
    for op in (lambda: v + foreign, lambda: v * foreign, lambda: v - foreign,
               lambda: v / foreign, lambda: v ** foreign):
        with pytest.raises(TypeError, match="cannot be combined with a .*_ForeignValue"):
            op()
    # a plain object that only lacks the operators is still Python's own TypeError
    with pytest.raises(TypeError, match="unsupported operand"):
        v + object()


def test_upstream_micrograd_value_is_refused(engine):
    upstream = pytest.importorskip("micrograd.engine")
    with pytest.raises(TypeError, match="micrograd.engine.Value"):
        engine.Value(2.0) * upstream.Value(3.0)


def test_children_given_as_a_generator(engine):
    # micrograd takes any iterable (set(_children)); a generator is read once
    a, b = engine.Value(1.0), engine.Value(2.0)
    v = engine.Value(3.0, (x for x in (a, b)), "op")
    assert v._prev == {a, b}
    v._backward = lambda: None
    w = v * 2
    w.backward()
    assert v.grad == 2.0


# ---- a node's _backward saved, replaced, called, put back --------------------------------------

# each makes one node of an operator kind over the leaves a and b (V: Value, m: the engine module)
OP_GRAPHS = {
    "add": lambda V, m, a, b: a + b,
    "mul": lambda V, m, a, b: a * b,
    "square": lambda V, m, a, b: a * a,
    "pow": lambda V, m, a, b: a ** 3,
    "div": lambda V, m, a, b: a / b,
    "relu": lambda V, m, a, b: a.relu(),
    "tanh": lambda V, m, a, b: a.tanh(),
    "exp": lambda V, m, a, b: a.exp(),
    "log": lambda V, m, a, b: a.log(),
    "sigmoid": lambda V, m, a, b: a.sigmoid(),
    "dot": lambda V, m, a, b: m.dot([a, b], [b, a], V(0.5)),
    "sum_values": lambda V, m, a, b: m.sum_values([a, b, a]),
    "cross_entropy": lambda V, m, a, b: m.cross_entropy([a, b], 1),
    "hand-built": lambda V, m, a, b: V(a.data + b.data, (a, b), "+"),
}


def _rule_kept(V, m, kind, how):
    a, b = V(1.5), V(0.75)
    c = OP_GRAPHS[kind](V, m, a, b)
    saved = c._backward
    calls = []
    if how == "restored":  # freeze the node, then unfreeze it
        c._backward = lambda: None
        c._backward = saved
    elif how == "hooked":  # a hook that records the gradient and runs the saved rule
        def hooked():
            calls.append(c.grad)
            saved()
        c._backward = hooked
    elif how == "called":  # the lecture: set the grad, call the rule by hand, node by node
        c._backward = lambda: None
        c.grad = 2.0
        saved()
        return a.grad, b.grad, calls
    (c * 2.0 + 1.0).backward()
    return a.grad, b.grad, calls


@pytest.mark.parametrize("how", ["restored", "hooked", "called"])
@pytest.mark.parametrize("kind", OP_GRAPHS)
def test_saved_backward_keeps_its_rule(engine, ref, kind, how):
    """The callable read from _backward is that node's rule, whatever _backward becomes later
    (micrograd's is a closure): put back, called from a hook or by hand, it adds the same
    gradients as the untouched node, on both engines."""
    got = _rule_kept(engine.Value, engine.module, kind, how)
    assert got == _rule_kept(ref.Value, ref.module, kind, how)
    a, b = engine.Value(1.5), engine.Value(0.75)
    c = OP_GRAPHS[kind](engine.Value, engine.module, a, b)
    if how == "called":
        c.grad = 2.0
        c._backward()
    else:
        (c * 2.0 + 1.0).backward()
    assert got[:2] == (a.grad, b.grad)
    if kind != "hand-built":
        assert any(g != 0 for g in got[:2])
    assert got[2] == ([2.0] if how == "hooked" else [])


@pytest.mark.parametrize("kind", ["mul", "dot", "softmax"])
def test_saved_rule_after_the_value_is_made_anew(engine, ref, kind):
    """__init__ run again makes the Value a new node: a rule saved from the old one reaches
    nothing through it (micrograd's closure would still update the old children; both of our
    engines do nothing), whatever the new node is."""
    def run(E):
        xs = [E.Value(float(v)) for v in (2.0, 3.0, 5.0, 7.0)]
        if kind == "mul":
            v = xs[0] * xs[1]
        elif kind == "dot":
            v = E.module.dot(xs[:3], [xs[2], xs[3], xs[0]], xs[3])
        else:
            v = E.module.softmax(xs)[3]
        rule = v._backward
        v.__init__(1.5, (xs[2], xs[3]) if kind == "mul" else (xs[0],))
        v.grad = 1.0
        rule()
        return [x.grad for x in xs]

    assert run(engine) == run(ref) == [0.0] * 4


def test_saved_rule_copies(engine):
    """copy and deepcopy of a rule give a callable that does what the rule does."""
    a, b = engine.Value(2.0), engine.Value(3.0)
    c = a * b
    rule = c._backward
    c.grad = 1.0
    copy.copy(rule)()
    assert (a.grad, b.grad) == (3.0, 2.0)
    if engine.name == "c":  # (a function to micrograd: copies are the object itself)
        assert copy.copy(rule) is rule and copy.deepcopy(rule) is rule


# ---- the class itself, changed by a script (as scripts extend micrograd's Value) ----------------

CLASS_CLOSED = sys.version_info < (3, 10)  # CPython 3.9 refuses attributes on extension types


def test_a_method_added_to_the_class(engine):
    # scripts written for micrograd add ops to its class: Value.cube = cube
    Value = engine.Value

    def cube(self):
        out = Value(self.data ** 3, (self,), "cube")

        def _backward():
            self.grad += 3 * self.data ** 2 * out.grad
        out._backward = _backward
        return out

    if engine.name == "c" and CLASS_CLOSED:
        with pytest.raises(TypeError):
            Value.cube = cube
        return
    Value.cube = cube
    try:
        x = Value(2.0)
        y = (x.cube() + 1.0) * 2.0
        y.backward()
        assert (y.data, x.grad, x.cube()._op) == (18.0, 24.0, "cube")
    finally:
        del Value.cube
    assert not hasattr(x, "cube")


def test_an_activation_given_to_the_class_is_the_one_nn_calls(engine):
    # nn's neurons call act.relu(): once the script's own relu is the class's, every neuron
    # calls it (the compiled engine's fused layers hand those neurons back to Python), and
    # when the engine's is put back, the results are the same numbers as before
    if engine.name == "c" and CLASS_CLOSED:
        pytest.skip("CPython 3.9: extension types' attributes cannot be assigned")
    Value, nn = engine.Value, engine.nn
    random.seed(7)
    model = nn.MLP(3, [4, 4, 1])
    x = [Value(0.5), Value(-1.5), Value(2.0)]
    before = model(x).data
    ours, calls = Value.relu, []

    def relu(self):
        calls.append(self.data)
        return Value(max(self.data, 0.0) * 2.0, (self,), "relu2")

    Value.relu = relu
    try:
        doubled = model(x)
        assert len(calls) == 8  # two hidden layers of 4 relu neurons; the output is linear
        assert doubled.data != before
        assert model.layers[0](x)[0]._op == "relu2"
    finally:
        Value.relu = ours
    calls.clear()
    assert model(x).data == before and calls == []


def test_class_assignment_of_a_value(engine):
    Value = engine.Value

    class Sub(Value):
        pass

    v = Value(1.5)
    assert v.__class__ is Value and Sub(2.0).__class__ is Sub
    if engine.name == "c":  # the compiled engine keeps each Value's class (its bookkeeping)
        with pytest.raises(TypeError, match="__class__ assignment"):
            v.__class__ = Sub
        assert type(v) is Value
    else:  # plain Python objects
        v.__class__ = Sub
        assert type(v) is Sub
    assert (v * 2.0).data == 3.0


def test_an_init_or_a_deleted_method_of_the_class(engine):
    # a script's own __init__ is the one Value(x) runs; a method deleted from the class is
    # gone for nn's neurons too (an AttributeError, as the reference's)
    if engine.name == "c" and CLASS_CLOSED:
        pytest.skip("CPython 3.9: extension types' attributes cannot be assigned")
    Value, nn = engine.Value, engine.nn
    own_init, own_relu, seen = Value.__init__, Value.relu, []

    def init(self, data, _children=(), _op="", label=""):
        seen.append(data)
        own_init(self, data * 10, _children, _op, label)

    Value.__init__ = init
    try:
        assert (Value(1.5).data, Value(2.5, label="x").label, seen) == (15.0, "x", [1.5, 2.5])
    finally:
        Value.__init__ = own_init
    assert Value(1.5).data == 1.5
    model = nn.MLP(2, [2, 1])
    del Value.relu
    try:
        with pytest.raises(AttributeError, match="relu"):
            model([1.0, 2.0])
    finally:
        Value.relu = own_relu
    assert model([1.0, 2.0]).data == model([1.0, 2.0]).data


def test_signatures_for_help_and_tooltips(engine):
    """inspect (help(), a notebook's tooltip) reads Value's arguments on both engines, and the
    methods' and functions' of the compiled one too."""
    import inspect

    sig = inspect.signature(engine.Value)
    assert [(p.name, p.default) for p in sig.parameters.values()] == [
        ("data", inspect.Parameter.empty), ("_children", ()), ("_op", ""), ("label", "")]

    class Sub(engine.Value):
        pass

    assert list(inspect.signature(Sub).parameters) == ["data", "_children", "_op", "label"]
    assert list(inspect.signature(engine.Value.backward).parameters) == ["self"]
    assert list(inspect.signature(engine.dot).parameters)[:2] == ["ws", "xs"]
    assert engine.Value.__doc__.startswith("A scalar that remembers how it was made")
