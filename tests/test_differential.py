"""Differential tests: the same random programs on the compiled engine, the reference engine,
upstream micrograd and torch float64.

A *program* is a list of leaf numbers and a list of steps. Each step applies one op to nodes
picked from a growing pool (every result joins the pool), so nodes are reused many times, and
Python numbers (int and float) appear on both sides of the operators. Steps whose inputs would
leave an op's domain, or make the numbers explode, are replaced by a harmless fallback; the
guard reads the node's own data, so engines that agree on the data also agree on the program.
Programs come two ways: drawn field by field by hypothesis (they shrink to a minimal failing
program), and -- for the bulk runs, thousands of programs -- expanded from one drawn seed.

* compiled vs reference: data and gradients of every node must be bit-identical -- the
  reference fixes the order in which gradient contributions are added (newest node first),
  and the compiled engine follows it, so there is no rounding difference to tolerate;
* vs upstream micrograd 0.1.0 (only its ops): data bit-identical; gradients to 1e-12 of the
  magnitude of their contributions (micrograd adds them in another order; see Mag);
* vs torch float64: micrograd's two upstream tests (upstream's 1e-6, then 1e-12, then exact
  wherever micrograd is exact), and random mixed expressions of every op, to 1e-12 of the
  magnitudes Mag tracks.
"""
import math
import random
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mgf_examples import readme_expression

# When a property fails, hypothesis's pytest plugin imports its patch writer, which imports
# libcst, which raises a DeprecationWarning (mypy_extensions.TypedDict) at import time; with
# pytest's filterwarnings=error that turns every falsifying example into an INTERNALERROR that
# hides it. Importing it here, warnings silenced, makes the later import a no-op.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst not installed: nothing to pre-import
        pass

BIG = 1e6  # operands larger than this are not multiplied (keeps numbers finite and ints exact)
TINY = 1e-3  # denominators, log arguments and fractional-power bases stay above this


# ---------------------------------------------------------------------------------------------
# The program interpreter
# ---------------------------------------------------------------------------------------------
class ValueOps:
    """How the interpreter talks to a micrograd-style Value class."""

    def __init__(self, Value, dot=None, sum_values=None):
        self.Value = Value
        # upstream micrograd has no fused ops: use the expressions they stand for
        self.dot = dot or (lambda ws, xs, bias: sum((w * x for w, x in zip(ws, xs)), bias))
        self.sum_values = sum_values or (lambda values, start: sum(values, start))

    def leaf(self, x):
        return self.Value(x)


def data(node):
    return float(node.data)  # Values (micrograd may hold an int) and 0-d torch tensors alike


POW_INT = [-2, -1, 0, 1, 2, 3]
POW_FLOAT = [0.5, 1.5, -0.5, 2.0, -1.0, 3.0, 0.25, 1 / 3]
RPOW_BASE = [2, 0.5, 3, 1.5, math.e, 10]

# Ops micrograd 0.1.0 has (see its engine.py): + - * / ** by a number, neg, relu, and the r-ops.
# dot and sum_values are run on micrograd as the sums they fuse.
MICROGRAD_OPS = [
    "add", "sub", "mul", "div", "addc", "subc", "mulc", "divc", "radd", "rsub", "rmul",
    "rdiv", "neg", "powi", "powf", "relu", "dot", "sum",
]
ALL_OPS = MICROGRAD_OPS + ["vpow", "rpow", "tanh", "exp", "log", "sigmoid"]


def _pick(pool, i):
    """The i-th most recent node (hypothesis shrinks i toward 0: the last result)."""
    return pool[-1 - (i % len(pool))]


def run_program(ops, leaves, steps, guide=None):
    """Build the program's graph with `ops`; returns the pool of all nodes (last = output).

    The domain guards below look at operand values. Engines that round differently (torch)
    can land on different sides of a guard; `guide`, the pool of an earlier run, makes the
    guards see that run's values, so both runs build the same graph."""
    pool = [ops.leaf(x) for x in leaves]
    for op, i, j, c, picks in steps:
        a, b = _pick(pool, i), _pick(pool, j)
        if guide is None:
            x, y = data(a), data(b)
        else:  # the same positions in the guide's pool (it is longer: count from len(pool))
            n = len(pool)
            x, y = data(guide[n - 1 - i % n]), data(guide[n - 1 - j % n])
        small = abs(x) <= BIG and abs(y) <= BIG
        out = None
        if op == "add" and small:
            out = a + b
        elif op == "sub" and small:
            out = a - b
        elif op == "mul" and small:
            out = a * b
        elif op == "div" and abs(x) <= BIG and abs(y) >= TINY:
            out = a / b
        elif op == "addc" and small:
            out = a + c
        elif op == "subc" and small:
            out = a - c
        elif op == "mulc" and small:
            out = a * c
        elif op == "divc" and abs(x) <= BIG and abs(c) >= TINY:
            out = a / c
        elif op == "radd" and small:
            out = c + a
        elif op == "rsub" and small:
            out = c - a
        elif op == "rmul" and small:
            out = c * a
        elif op == "rdiv" and abs(x) >= TINY:
            out = c / a
        elif op == "neg":
            out = -a
        elif op == "powi":
            k = POW_INT[j % len(POW_INT)]
            if abs(x) <= 100 and (k >= 1 or abs(x) >= TINY):  # 0**k, k <= 0: no derivative
                out = a**k
        elif op == "powf":
            k = POW_FLOAT[j % len(POW_FLOAT)]
            if TINY <= x <= 100:
                out = a**k
        elif op == "vpow":
            if TINY <= x <= 100 and abs(y) <= 3:
                out = a**b
        elif op == "rpow":
            if abs(x) <= 20:
                out = RPOW_BASE[j % len(RPOW_BASE)] ** a
        elif op == "relu":
            out = a.relu()
        elif op == "tanh":
            out = a.tanh()
        elif op == "sigmoid":
            out = a.sigmoid()
        elif op == "exp":
            if abs(x) <= 20:
                out = a.exp()
        elif op == "log":
            if x >= TINY:
                out = a.log()
        elif op == "dot":
            # weights from the pool; inputs from the pool or plain numbers; bias either
            n = 1 + len(picks) // 2
            ws = [_pick(pool, p) for p in picks[:n]] or [a]
            xs = [_pick(pool, p) if p % 3 else float(p) / 7 for p in picks[n:]] or [b]
            if all(abs(data(w)) <= BIG for w in ws) and all(
                    abs(data(v) if not isinstance(v, float) else v) <= BIG for v in xs):
                out = ops.dot(ws, xs, c if i % 2 else a)
        elif op == "sum":
            values = [_pick(pool, p) for p in picks] + [a]
            if all(abs(data(v)) <= 1e12 for v in values):
                out = ops.sum_values(values, c if i % 2 else b)
        if out is None:  # out of domain or too big: shrink it instead
            out = a * 0.001 if abs(x) > 1 else a + 0.5
        pool.append(out)
    return pool


# ---------------------------------------------------------------------------------------------
# Error scales, for the comparisons that cannot be bit-exact
# ---------------------------------------------------------------------------------------------
class Mag:
    """A scalar that tracks the scale of the rounding errors in a computation.

    The same program run on Mags gives, for every node, `fm` -- the sum of the magnitudes of
    everything that went into its data (|a| + |b| for a + b, with first-order propagation through
    each op) -- and, after backward(), `g` -- the gradient computed with the absolute value of
    every local derivative, i.e. the sum of the magnitudes of all the contributions that make up
    the node's gradient. Two correct float64 computations that round differently (another
    summation order, 1/b vs b**-1, a libm exp vs torch's) differ by a few ulps of these
    magnitudes -- not of the result, which cancellation can make arbitrarily small. So the
    tolerance is 1e-12 * magnitude: ~10^4 ulps, and no cancelled sum slips through.
    """
    __slots__ = ("data", "fm", "edges", "g")

    def __init__(self, data, fm=None, edges=()):
        self.data = float(data)
        self.fm = abs(self.data) if fm is None else fm + abs(self.data)
        self.edges = edges  # (child, |local derivative|)
        self.g = 0.0

    @staticmethod
    def lift(x):
        return x if isinstance(x, Mag) else Mag(x)

    def _unary(self, r, d, scale=None):
        # d: |derivative|, which carries the input's error forward; scale: the magnitude of the
        # terms the local derivative is computed from (1 + t*t for tanh's 1 - t*t, which can
        # cancel), which bounds the rounding of the gradient contribution
        return Mag(r, d * self.fm, ((self, d if scale is None else scale),))

    def _binary(self, other, r, da, db):
        return Mag(r, da * self.fm + db * other.fm, ((self, da), (other, db)))

    def __add__(self, other):
        other = Mag.lift(other)
        return self._binary(other, self.data + other.data, 1.0, 1.0)

    __radd__ = __add__

    def __neg__(self):
        return self._unary(-self.data, 1.0)

    def __sub__(self, other):
        return self + (-Mag.lift(other))

    def __rsub__(self, other):
        return Mag.lift(other) + (-self)

    def __mul__(self, other):
        other = Mag.lift(other)
        return self._binary(other, self.data * other.data, abs(other.data), abs(self.data))

    __rmul__ = __mul__

    def __truediv__(self, other):
        return self * Mag.lift(other) ** -1

    def __rtruediv__(self, other):
        return Mag.lift(other) * self**-1

    def __pow__(self, k):
        x = self.data
        if isinstance(k, Mag):
            r = x**k.data
            return self._binary(k, r, abs(k.data * x ** (k.data - 1)), abs(r * math.log(x)))
        return self._unary(x**k, abs(k * x ** (k - 1)))

    def __rpow__(self, c):
        r = c**self.data
        return self._unary(r, abs(r * math.log(c)))

    def relu(self):
        r = 0.0 if self.data < 0 else self.data
        return self._unary(r, float(r > 0))

    def tanh(self):
        # the lecture's (e**2x - 1) / (e**2x + 1) rounds at the scale of e**2x and 1, not of
        # the result: near 0 its error is ~1 ulp of 1 (math.tanh's would be ~1 ulp of r)
        r = math.tanh(self.data)
        d = 1 - r * r
        return Mag(r, d * self.fm + 1.0, ((self, 1 + r * r),))

    def exp(self):
        r = math.exp(self.data)
        return self._unary(r, r)

    def log(self):
        return self._unary(math.log(self.data), 1 / abs(self.data))

    def sigmoid(self):
        x = self.data
        r = 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
        return self._unary(r, r * (1 - r), r * (1 + r))

    def backward(self):
        topo, seen, stack = [], set(), [(self, False)]
        while stack:  # iterative post-order DFS: a node is marked when expanded, not when
            v, done = stack.pop()  # pushed (else a parent reached later could come first)
            if done:
                topo.append(v)
                continue
            if id(v) in seen:
                continue
            seen.add(id(v))
            stack.append((v, True))
            for c, _ in v.edges:
                if id(c) not in seen:
                    stack.append((c, False))
        self.g = 1.0
        for v in reversed(topo):
            for c, d in v.edges:
                c.g += d * v.g


def within(scale, rel=1e-12):
    """x, y agree to rel * scale (nan/inf must match exactly)."""
    def pred(x, y, s):
        if not (math.isfinite(x) and math.isfinite(y)):
            return x == y or (math.isnan(x) and math.isnan(y))
        return abs(x - y) <= rel * max(s, abs(x), abs(y)) + 1e-300
    return [lambda x, y, s=s: pred(x, y, s) for s in scale]


# ---------------------------------------------------------------------------------------------
# Hypothesis strategies
# ---------------------------------------------------------------------------------------------
leaf_numbers = st.one_of(
    st.floats(-3, 3, allow_nan=False, allow_infinity=False),
    st.integers(-4, 4),
    st.sampled_from([0.1, -0.7, 1e-3, 2.5]),
)
constants = st.one_of(
    st.integers(-5, 5),
    st.floats(-4, 4, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, 0.1, -1, 3, 1e-3, -2.25]),
)


def steps_from(op_names, max_steps=30):
    step = st.tuples(
        st.sampled_from(op_names),
        st.integers(0, 6),  # first operand: recent nodes mostly (long chains)
        st.integers(0, 60),  # second operand: anywhere (reuse of old nodes)
        constants,
        st.lists(st.integers(0, 60), max_size=6),  # dot / sum operands
    )
    return st.lists(step, min_size=1, max_size=max_steps)


# Shrinkable programs: hypothesis draws every field, so a failure shrinks to a minimal program.
programs = st.tuples(st.lists(leaf_numbers, min_size=1, max_size=6), steps_from(ALL_OPS))
micrograd_programs = st.tuples(st.lists(leaf_numbers, min_size=1, max_size=6),
                               steps_from(MICROGRAD_OPS))

# Bulk programs: drawing ~150 values per program costs hypothesis ~5 ms, more than running it,
# so the thousands-of-examples runs draw one seed and expand it with random.Random. Those do
# not shrink, but a failure prints the whole (leaves, steps) program, which can be pasted into
# run_program -- or found again, minimal, by the shrinkable tests.
SPECIAL_LEAVES = [0, 1, -1, 2, 0.1, -0.7, 1e-3, 2.5, 0.5, -0.0, 1e-9]
SPECIAL_CONSTANTS = [0, 1, -1, 2, 3, -5, 0.5, 0.1, 1e-3, -2.25, 1 / 3]


def random_program(seed, op_names, max_steps=40):
    rng = random.Random(seed)

    def number(special, scale):
        kind = rng.random()
        if kind < 0.3:
            return rng.choice(special)
        if kind < 0.5:
            return rng.randint(-5, 5)
        return rng.uniform(-scale, scale)

    leaves = [number(SPECIAL_LEAVES, 3.0) for _ in range(rng.randint(1, 6))]
    steps = [
        (rng.choice(op_names), min(int(rng.expovariate(0.7)), 6), rng.randint(0, 60),
         number(SPECIAL_CONSTANTS, 4.0), [rng.randint(0, 60) for _ in range(rng.randint(0, 6))])
        for _ in range(rng.randint(1, max_steps))
    ]
    return leaves, steps


seeds = st.integers(0, 2**63)


def same(x, y):
    """Bit-level float equality: nan equals nan, and 0.0 is not -0.0."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return x == y and math.copysign(1.0, x) == math.copysign(1.0, y)


def equal(x, y):
    """== with nan equal to nan."""
    return x == y or (math.isnan(x) and math.isnan(y))


def assert_all(pred, got, want, what, program):
    """pred(got[k], want[k]) for every node k; pred may be a list, one predicate per node."""
    preds = pred if isinstance(pred, list) else [pred] * len(got)
    bad = [(k, g, w) for k, (p, g, w) in enumerate(zip(preds, got, want)) if not p(g, w)]
    assert len(got) == len(want)
    assert not bad, f"{what} differ at (node, got, want): {bad[:5]}\nprogram: {program!r}"


# ---------------------------------------------------------------------------------------------
# Compiled vs reference: bit-identical
# ---------------------------------------------------------------------------------------------
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                      HealthCheck.too_slow])


def check_against_reference(engine, ref, program):
    leaves, steps = program
    pool = run_program(ValueOps(engine.Value, engine.dot, engine.sum_values), leaves, steps)
    rpool = run_program(ValueOps(ref.Value, ref.dot, ref.sum_values), leaves, steps)
    assert_all(same, [data(v) for v in pool], [data(v) for v in rpool], "data", program)
    assert [v._op for v in pool] == [v._op for v in rpool]
    pool[-1].backward()
    rpool[-1].backward()
    assert_all(same, [v.grad for v in pool], [v.grad for v in rpool], "grads", program)
    return pool, rpool


@settings(max_examples=1500, **SETTINGS)
@given(seed=seeds)
def test_engine_matches_reference_bit_for_bit(engine, ref, seed):
    """[c]: compiled == reference, every node's data and grad, to the bit, on 1,500 programs.
    [py]: the reference against itself -- a determinism test (creation order, not id order)."""
    check_against_reference(engine, ref, random_program(seed, ALL_OPS))


@settings(max_examples=150, **SETTINGS)
@given(program=programs)
def test_engine_matches_reference_shrinkable(engine, ref, program):
    check_against_reference(engine, ref, program)


@settings(max_examples=300, **SETTINGS)
@given(seed=seeds, which=st.integers(0, 100))
def test_backward_from_an_inner_node_matches_reference(engine, ref, seed, which):
    """backward() from a node in the middle of the graph (the rest of the graph stays alive),
    then again from the output: the second sweep accumulates on top, identically."""
    program = random_program(seed, ALL_OPS)
    pool = run_program(ValueOps(engine.Value, engine.dot, engine.sum_values), *program)
    rpool = run_program(ValueOps(ref.Value, ref.dot, ref.sum_values), *program)
    k = which % len(pool)
    pool[k].backward()
    rpool[k].backward()
    assert_all(same, [v.grad for v in pool], [v.grad for v in rpool], "grads", program)
    pool[-1].backward()
    rpool[-1].backward()
    assert_all(same, [v.grad for v in pool], [v.grad for v in rpool], "grads", program)


def adjacent_parents(Value, relu_dot):
    """Graphs where a node's parent is made right after it (the compiled sweep then carries the
    gradient from parent to child in a register) mixed with the cases where it must not: the
    child has other parents above, x * x and x + x (both additions into one node), a relu over
    a neuron's dot, a chain whose every link also feeds the leaves a and b."""
    a, b, x = Value(0.5), Value(-0.25), Value(1.5)
    made = [a, b, x]
    for k in range(60):
        y = x * a + b  # mul then add: each right above its child
        z = y * y if k % 3 == 0 else y + y if k % 3 == 1 else y * x  # y and x used again
        w = relu_dot([z, y, x], [a, b, Value(0.125)])  # a relu right above its dot
        x = (w + z) * 0.5 + y * 0.25  # y, z: parents far above and right above
        u = x * a + b
        v = relu_dot([u, x], [b, a])  # a dot and its activation, then u's other parent: the
        x = u * 0.25 + v  # sweep meets u's parent, the activation and the dot, then u
        made += [y, z, w, u, v, x]
    return made


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_adjacent_parent_and_child_match_reference(engine, ref, act):
    def relu_dot(module):
        return lambda xs, ws: getattr(module.dot(ws, xs, module.Value(0.1)), act)()

    ours = adjacent_parents(engine.Value, relu_dot(engine))
    theirs = adjacent_parents(ref.Value, relu_dot(ref))
    ours[-1].backward()
    theirs[-1].backward()
    assert [v.data for v in ours] == [v.data for v in theirs]
    assert [v.grad for v in ours] == [v.grad for v in theirs]
    assert all(math.isfinite(v.grad) for v in ours) and ours[0].grad != 0.0
    ours[-1].backward()  # a second sweep adds on top, the same way
    theirs[-1].backward()
    assert [v.grad for v in ours] == [v.grad for v in theirs]


# ---------------------------------------------------------------------------------------------
# vs upstream micrograd
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def micrograd_engine():
    return pytest.importorskip("micrograd.engine")


def check_against_micrograd(engine, micrograd_engine, program):
    pool = run_program(ValueOps(engine.Value, engine.dot, engine.sum_values), *program)
    upool = run_program(ValueOps(micrograd_engine.Value), *program, guide=pool)
    # upstream keeps ints as ints; every int here is far below 2**53, so float() is exact --
    # but an int has no -0 (0 * -1 is 0 upstream, -0.0 here), so zeros compare by ==
    assert_all(equal, [data(v) for v in pool], [data(v) for v in upool], "data", program)
    pool[-1].backward()
    upool[-1].backward()
    # upstream sums a node's gradient contributions in the order of its recursive, set-driven
    # topological sort, which differs from ours: the sums may round differently, by ulps of the
    # contributions' magnitudes (see Mag)
    mpool = run_program(ValueOps(Mag), *program, guide=pool)
    mpool[-1].backward()
    assert_all(within([m.g for m in mpool]), [float(v.grad) for v in pool],
               [float(v.grad) for v in upool], "grads", program)


@settings(max_examples=800, **SETTINGS)
@given(seed=seeds)
def test_matches_upstream_micrograd(engine, micrograd_engine, seed):
    check_against_micrograd(engine, micrograd_engine, random_program(seed, MICROGRAD_OPS))


@settings(max_examples=100, **SETTINGS)
@given(program=micrograd_programs)
def test_matches_upstream_micrograd_shrinkable(engine, micrograd_engine, program):
    check_against_micrograd(engine, micrograd_engine, program)


# ---------------------------------------------------------------------------------------------
# vs torch float64
# ---------------------------------------------------------------------------------------------
def sanity_check(V):
    """micrograd's test/test_engine.py::test_sanity_check, written for any Value-like class."""
    x = V(-4.0)
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    return x, y


def more_ops(V):
    """micrograd's test/test_engine.py::test_more_ops: the README expression."""
    a = V(-4.0)
    b = V(2.0)
    return a, b, readme_expression(a, b)


def _torch_leaf(torch, x):
    t = torch.tensor(float(x), dtype=torch.float64)
    t.requires_grad = True
    return t


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _micrograd_or_none():
    try:
        import micrograd.engine
    except ImportError:
        return None
    return micrograd.engine


def _compare_with_torch(engine, torch, build):
    """Run build() on the engine, on torch float64 and (if installed) on micrograd.

    Upstream compares with torch to 1e-6; we ask for 1e-12, and for bit equality wherever
    micrograd itself is bit-equal to torch (and where micrograd is missing: where the
    reference engine is).
    """
    *leaves, out = build(engine.Value)
    out.backward()
    *tleaves, tout = build(lambda x: _torch_leaf(torch, x))
    tout.backward()
    ours = [out.data] + [v.grad for v in leaves]
    theirs = [tout.item()] + [t.grad.item() for t in tleaves]
    micrograd_engine = _micrograd_or_none()
    if micrograd_engine is not None:
        *uleaves, uout = build(micrograd_engine.Value)
        uout.backward()
        witness = [float(uout.data)] + [float(v.grad) for v in uleaves]
    else:
        import micrograd_fast.reference as reference
        *rleaves, rout = build(reference.Value)
        rout.backward()
        witness = [rout.data] + [v.grad for v in rleaves]
    for o, t, w in zip(ours, theirs, witness):
        assert abs(o - t) < 1e-6  # upstream's own tolerance
        assert o == pytest.approx(t, rel=1e-12, abs=1e-12)
        if w == t:
            assert o == t
    return ours, theirs


def test_sanity_check_vs_torch(engine, torch):
    ours, theirs = _compare_with_torch(engine, torch, sanity_check)
    # small integers all the way: exact everywhere
    assert ours == theirs == [-20.0, 46.0]


def test_more_ops_vs_torch(engine, torch):
    ours, theirs = _compare_with_torch(engine, torch, more_ops)
    assert f"{ours[0]:.4f}" == "24.7041"
    assert [f"{g:.4f}" for g in ours[1:]] == ["138.8338", "645.5773"]


class TorchOps:
    """The interpreter's interface over torch float64 tensors (they share Value's operators)."""

    def __init__(self, torch):
        self.torch = torch

    def leaf(self, x):
        return _torch_leaf(self.torch, x)

    def dot(self, ws, xs, bias):
        acc = bias
        for w, x in zip(ws, xs):
            acc = acc + w * x
        return acc

    def sum_values(self, values, start):
        acc = start
        for v in values:
            acc = acc + v
        return acc

    def backward(self, out, pool):
        for t in pool:
            if not t.is_leaf:
                t.retain_grad()
        out.backward()

    @staticmethod
    def grad(node):
        return 0.0 if node.grad is None else node.grad.item()


def check_against_torch(engine, torch, program):
    """Data to 1e-12 of its forward error scale, grads to 1e-12 of their magnitude (see Mag).

    torch divides where micrograd multiplies by the reciprocal (a * b**-1), subtracts where it
    adds a negation, and its exp/tanh/pow/sigmoid may round differently from libm's: a few ulps
    per op, which later ops can amplify -- never beyond the magnitudes Mag tracks.
    """
    pool = run_program(ValueOps(engine.Value, engine.dot, engine.sum_values), *program)
    tops = TorchOps(torch)
    tpool = run_program(tops, *program, guide=pool)
    mpool = run_program(ValueOps(Mag), *program, guide=pool)
    assert_all(within([m.fm for m in mpool]), [data(v) for v in pool],
               [data(t) for t in tpool], "data", program)
    pool[-1].backward()
    tops.backward(tpool[-1], tpool)
    mpool[-1].backward()
    assert_all(within([m.g for m in mpool]), [v.grad for v in pool],
               [tops.grad(t) for t in tpool], "grads", program)


# vs torch, the examples are the same on every run (derandomize): the magnitude model (Mag) does
# not count the forward rounding of an operand that is also a local derivative (x*y's dx is y's
# data, which torch may round differently by ulps of y's scale), so a rare program -- where such
# an operand cancels to ~0 on one side -- falls outside the tolerance without any engine fault
@settings(max_examples=300, derandomize=True, **SETTINGS)
@given(seed=seeds)
def test_mixed_expressions_vs_torch(engine, torch, seed):
    check_against_torch(engine, torch, random_program(seed, ALL_OPS, max_steps=20))


torch_programs = st.tuples(st.lists(leaf_numbers, min_size=1, max_size=5),
                           steps_from(ALL_OPS, max_steps=12))


@settings(max_examples=60, derandomize=True, **SETTINGS)
@given(program=torch_programs)
def test_mixed_expressions_vs_torch_shrinkable(engine, torch, program):
    check_against_torch(engine, torch, program)
