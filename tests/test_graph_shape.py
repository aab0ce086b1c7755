"""The graph an expression builds has micrograd's shape, node for node.

A learner who draws the graph (walking `_prev` and reading `_op`, as the lecture's draw_dot does)
must see what micrograd would show: a - b is a + (b * -1), a / b is a * b**-1, -a is a * -1, and
Python numbers become leaf nodes. For every operator we compare, against upstream micrograd
0.1.0 (when installed) and against the reference engine: the number of distinct nodes, the
multiset of `_op` strings, and the whole structure (each node's op, data and children).
Then `_prev` itself: a set of the very Value objects that were passed in, the same objects on
every call.
"""
import collections

import pytest
from mgf_examples import readme_expression


def walk(out):
    """Every distinct node reachable from out through _prev (by identity), out first."""
    nodes, seen, stack = [], {id(out)}, [out]
    while stack:
        v = stack.pop()
        nodes.append(v)
        for child in v._prev:
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return nodes


def shape(out):
    """The structure below out: (op, data, sorted child shapes), independent of object ids."""
    memo = {}  # id -> (node, shape): holding the node keeps its id from being reused

    def sig(v):
        if id(v) not in memo:
            children = sorted((sig(c) for c in v._prev), key=repr)
            memo[id(v)] = (v, (v._op, float(v.data), tuple(children)))
        return memo[id(v)][1]

    return sig(out)  # recursive: fine for the small graphs here


def ops(out):
    return collections.Counter(v._op for v in walk(out))


# Expressions over two leaves a = 3.0, b = -2.0 (and Python numbers): every operator micrograd
# has, alone and combined, plus node reuse.
MICROGRAD_EXPRESSIONS = {
    "a+b": lambda a, b: a + b,
    "a+2": lambda a, b: a + 2,
    "a+2.5": lambda a, b: a + 2.5,
    "2+a": lambda a, b: 2 + a,
    "2.5+a": lambda a, b: 2.5 + a,
    "a-b": lambda a, b: a - b,
    "a-2": lambda a, b: a - 2,
    "a-2.5": lambda a, b: a - 2.5,
    "2-a": lambda a, b: 2 - a,
    "2.5-a": lambda a, b: 2.5 - a,
    "a*b": lambda a, b: a * b,
    "a*3": lambda a, b: a * 3,
    "a*1.5": lambda a, b: a * 1.5,
    "3*a": lambda a, b: 3 * a,
    "1.5*a": lambda a, b: 1.5 * a,
    "a/b": lambda a, b: a / b,
    "a/2": lambda a, b: a / 2,
    "a/0.5": lambda a, b: a / 0.5,
    "2/a": lambda a, b: 2 / a,
    "0.5/a": lambda a, b: 0.5 / a,
    "a**2": lambda a, b: a**2,
    "a**3": lambda a, b: a**3,
    "a**-1": lambda a, b: a**-1,
    "a**-2": lambda a, b: a**-2,
    "a**0": lambda a, b: a**0,
    "a**2.0": lambda a, b: a**2.0,
    "a**0.5": lambda a, b: a**0.5,
    "a**-0.5": lambda a, b: a**-0.5,
    "a**(1/3)": lambda a, b: a ** (1 / 3),
    "a**1e-05": lambda a, b: a**1e-05,
    "-a": lambda a, b: -a,
    "--a": lambda a, b: -(-a),
    "relu(a)": lambda a, b: a.relu(),
    "relu(b)": lambda a, b: b.relu(),
    "a+a": lambda a, b: a + a,
    "a*a": lambda a, b: a * a,
    "a-a": lambda a, b: a - a,
    "a/a": lambda a, b: a / a,
    "a-(-b)": lambda a, b: a - (-b),
    "shared": lambda a, b: (lambda c: c * c + c)(a * b),
    "relu(a-b)/(a*b+1)": lambda a, b: (a - b).relu() / (a * b + 1),
    "neuron": lambda a, b: sum((w * x for w, x in zip([a, b], [0.5, -1.5])), b).relu(),
    "readme": lambda a, b: _readme(a, b),
    "sanity": lambda a, b: _sanity(a),
}


_readme = readme_expression  # in-place ops rebind: no mutation


def _sanity(x):
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    return h + q + q * x


CASES = [pytest.param(f, id=name) for name, f in MICROGRAD_EXPRESSIONS.items()]


@pytest.fixture(scope="module")
def micrograd_value():
    return pytest.importorskip("micrograd.engine").Value


@pytest.mark.parametrize("build", CASES)
def test_same_graph_as_micrograd(engine, micrograd_value, build):
    out = build(engine.Value(3.0), engine.Value(-2.0))
    theirs = build(micrograd_value(3.0), micrograd_value(-2.0))
    assert len(walk(out)) == len(walk(theirs))
    assert ops(out) == ops(theirs)
    assert shape(out) == shape(theirs)


@pytest.mark.parametrize("build", CASES)
def test_same_graph_as_reference(engine, ref, build):
    out = build(engine.Value(3.0), engine.Value(-2.0))
    theirs = build(ref.Value(3.0), ref.Value(-2.0))
    assert len(walk(out)) == len(walk(theirs))
    assert ops(out) == ops(theirs)
    assert shape(out) == shape(theirs)


# The shapes spelled out, so the tests say what micrograd builds even where it is not installed.
@pytest.mark.parametrize("build, n_nodes, op_counts", [
    (lambda a, b: a + b, 3, {"+": 1, "": 2}),
    (lambda a, b: a + 2, 3, {"+": 1, "": 2}),  # the 2 becomes a leaf
    (lambda a, b: a - b, 5, {"+": 1, "*": 1, "": 3}),  # a + (b * -1)
    (lambda a, b: 2 - a, 5, {"+": 1, "*": 1, "": 3}),  # 2 + (a * -1)
    (lambda a, b: a * b, 3, {"*": 1, "": 2}),
    (lambda a, b: a / b, 4, {"*": 1, "**-1": 1, "": 2}),  # a * b**-1
    (lambda a, b: a / 2, 3, {"*": 1, "": 2}),  # a * 0.5: 2**-1 is taken on the number
    (lambda a, b: 2 / a, 4, {"*": 1, "**-1": 1, "": 2}),  # a**-1 * 2
    (lambda a, b: -a, 3, {"*": 1, "": 2}),  # a * -1
    (lambda a, b: a**2, 2, {"**2": 1, "": 1}),
    (lambda a, b: a**0.5, 2, {"**0.5": 1, "": 1}),
    (lambda a, b: a**2.0, 2, {"**2.0": 1, "": 1}),
    (lambda a, b: a**-2, 2, {"**-2": 1, "": 1}),
    (lambda a, b: a.relu(), 2, {"ReLU": 1, "": 1}),
    (lambda a, b: a + a, 2, {"+": 1, "": 1}),  # one child, used twice
    (lambda a, b: a - a, 4, {"+": 1, "*": 1, "": 2}),
    # beyond micrograd: one node each
    (lambda a, b: a**b, 3, {"**": 1, "": 2}),
    (lambda a, b: 2**a, 3, {"**": 1, "": 2}),  # Value(2) ** a
    (lambda a, b: a.tanh(), 2, {"tanh": 1, "": 1}),
    (lambda a, b: a.exp(), 2, {"exp": 1, "": 1}),
    (lambda a, b: a.log(), 2, {"log": 1, "": 1}),
    (lambda a, b: a.sigmoid(), 2, {"sigmoid": 1, "": 1}),
])
def test_graph_shape_spelled_out(engine, build, n_nodes, op_counts):
    out = build(engine.Value(3.0), engine.Value(2.0))
    assert len(walk(out)) == n_nodes
    assert ops(out) == collections.Counter(op_counts)


def test_sub_has_the_minus_one_constant(engine):
    a, b = engine.Value(3.0), engine.Value(-2.0)
    c = a - b
    assert c._op == "+" and c.data == 5.0
    (neg,) = [v for v in c._prev if v is not a]
    assert neg._op == "*" and neg.data == 2.0
    assert b in neg._prev
    (k,) = [v for v in neg._prev if v is not b]
    assert k._op == "" and k.data == -1.0 and not k._prev


def test_div_has_the_power_minus_one_node(engine):
    a, b = engine.Value(3.0), engine.Value(-2.0)
    c = a / b
    assert c._op == "*" and c.data == -1.5
    (inv,) = [v for v in c._prev if v is not a]
    assert inv._op == "**-1" and inv.data == -0.5
    assert inv._prev == {b}
    d = a / 4
    (k,) = [v for v in d._prev if v is not a]
    assert k._op == "" and k.data == 0.25  # micrograd: other**-1 on the number


def test_neg_is_times_minus_one(engine):
    a = engine.Value(3.0)
    n = -a
    assert n._op == "*" and n.data == -3.0
    assert sorted(v.data for v in n._prev) == [-1.0, 3.0]
    assert a in n._prev


@pytest.mark.parametrize("k, text", [
    (2, "**2"), (-1, "**-1"), (0, "**0"), (10, "**10"), (2.0, "**2.0"), (0.5, "**0.5"),
    (-0.5, "**-0.5"), (1 / 3, "**0.3333333333333333"), (1e-05, "**1e-05"), (1e20, "**1e+20"),
])
def test_pow_op_text_is_micrograds(engine, k, text):
    """micrograd names the node f'**{other}': an int prints as an int, a float as its repr."""
    assert f"**{k}" == text
    out = engine.Value(1.0) ** k
    assert out._op == text


def test_fused_ops_are_one_node(engine):
    """dot and sum_values (not in micrograd): ONE node whose _prev is all of its operands."""
    V = engine.Value
    w1, w2, x1, x2, bias = V(0.5), V(-1.0), V(2.0), V(3.0), V(0.25)
    d = engine.dot([w1, w2], [x1, x2], bias)
    assert d._op == "dot"
    assert d._prev == {w1, w2, x1, x2, bias}
    assert len(walk(d)) == 6
    s = engine.sum_values([w1, x1, w1], start=bias)
    assert s._op == "sum"
    assert s._prev == {w1, x1, bias}
    assert s.data == 0.25 + 0.5 + 2.0 + 0.5
    t = engine.sum_values([w1, x2])  # start=0 becomes a leaf, as in micrograd's sum()
    assert t._op == "sum" and len(t._prev) == 3
    assert sorted(v.data for v in t._prev) == [0.0, 0.5, 3.0]


# ---------------------------------------------------------------------------------------------
# _prev: a set of the actual child objects, identity-stable
# ---------------------------------------------------------------------------------------------
def test_prev_holds_the_operands_themselves(engine):
    V = engine.Value
    a, b = V(2.0), V(5.0)
    c = a * b
    prev = c._prev
    assert type(prev) is set
    assert a in prev and b in prev
    assert {id(v) for v in prev} == {id(a), id(b)}
    assert all(v is a or v is b for v in prev)
    assert not a._prev and type(a._prev) is set  # a leaf: the empty set


def test_prev_is_identity_stable(engine):
    V = engine.Value
    a = V(2.0)
    c = a * 3 - a / 7  # hidden nodes: the 3, b * -1, the -1, 7**-1
    assert c._prev == c._prev
    first = {id(v): v for v in walk(c)}
    second = {id(v): v for v in walk(c)}
    assert first.keys() == second.keys()
    # the hidden constant is the same object on every look
    m = a * 3
    (k1,) = [v for v in m._prev if v is not a]
    (k2,) = [v for v in m._prev if v is not a]
    assert k1 is k2 and k1.data == 3.0


def test_prev_children_survive_their_names(engine):
    """Operands no longer referenced from Python are still in the graph, with their numbers."""
    V = engine.Value

    def build():
        a, b = V(2.0), V(-3.0)
        return (a * b + a).relu() * 0 + (a - b)  # a and b go out of scope here

    out = build()
    leaves = [v for v in walk(out) if not v._prev]
    assert sorted(v.data for v in leaves) == sorted([2.0, -3.0, 0.0, -1.0])
    assert out._prev == out._prev
    out.backward()
    # the leaf 2.0 (a) gets d/da = 0 * ... + 1, the leaf -3.0 (b) gets -1
    grads = {v.data: v.grad for v in leaves}
    assert grads[2.0] == 1.0 and grads[-3.0] == -1.0


def test_hidden_nodes_are_live(engine):
    """The nodes found through _prev are the graph's nodes: their grads are the ones backward
    computed, and a grad set on them is the one the next _backward() call uses."""
    V = engine.Value
    a, b = V(3.0), V(-2.0)
    c = a - b
    c.backward()
    (neg,) = [v for v in c._prev if v is not a]
    (k,) = [v for v in neg._prev if v is not b]
    assert neg.grad == 1.0
    assert k.grad == b.data  # d(c)/d(-1) = b
    assert b.grad == -1.0
    # manual backprop through the hidden node
    neg.grad = 10.0
    b.grad = 0.0
    neg._backward()
    assert b.grad == -10.0


def test_walk_finds_exactly_the_nodes_created(engine):
    """Every node the walk finds is one we made (or a constant/hidden node micrograd makes too),
    found once: the leaves are the objects we passed, by identity."""
    V = engine.Value
    xs = [V(float(i)) for i in range(1, 6)]
    acc = xs[0]
    made = {id(xs[0])}
    for x in xs[1:]:
        acc = acc * x + x
        made.add(id(x))
    nodes = walk(acc)
    leaves = [v for v in nodes if not v._prev]
    assert {id(v) for v in leaves} == made
    assert len(nodes) == 5 + 2 * 4  # 5 leaves, a '*' and a '+' per step
    assert ops(acc) == collections.Counter({"": 5, "*": 4, "+": 4})
    expect = 1.0
    for i in range(2, 6):
        expect = expect * i + i
    assert acc.data == expect


def test_hidden_node_state_outlives_its_facade(engine):
    """A hidden node's label, data and grad belong to the node: dropping the object that
    _prev gave us and asking again gives the same numbers (as in micrograd, where the object
    simply stays alive)."""
    V = engine.Value
    a, b = V(3.0), V(-2.0)
    c = a - b

    def hidden():
        (neg,) = [v for v in c._prev if v is not a]
        return neg

    neg = hidden()
    neg.label = "minus b"
    neg.grad = 4.5
    neg.data = 7.0
    del neg
    again = hidden()
    assert (again.label, again.grad, again.data) == ("minus b", 4.5, 7.0)
    assert again is hidden()  # and, while held, it is the one object _prev returns
