"""softmax, log_softmax, logsumexp, cross_entropy: fused, numerically stable nodes.

Each is checked against its closed form (math.fsum in double precision), against central finite
differences, against torch.nn.functional in float64 (when torch is installed), for stability at
logits of +-1000, for its errors, and for parity: both engines give the same numbers bit for bit.
"""
import math
import random
import struct
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from micrograd_fast.checks import gradcheck

# as in test_differential.py: hypothesis' patch writer warns at import (libcst); import it now,
# silenced, so that a falsifying example is reported instead of an INTERNALERROR
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

try:
    import torch
except ImportError:  # the torch comparisons skip
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")

LOGITS = [1.0, -2.0, 3.5, 0.25, 3.5 - 1e-9]


def bits(x):
    # every NaN is the same answer (its sign bit depends on how the CPU made it: C's inf - inf
    # and Python's math.nan differ there); every other number compares bit for bit
    return b"nan" if math.isnan(x) else struct.pack("<d", x)


def lse_fsum(xs):
    m = max(xs)
    return m + math.log(math.fsum(math.exp(x - m) for x in xs))


# ---- forward: closed forms -------------------------------------------------------------------

def test_softmax_closed_form(engine):
    xs = [engine.Value(x) for x in LOGITS]
    p = engine.module.softmax(xs)
    assert isinstance(p, list) and len(p) == len(LOGITS)
    assert math.isclose(math.fsum(v.data for v in p), 1.0, rel_tol=1e-15)
    lse = lse_fsum(LOGITS)
    for v, x in zip(p, LOGITS):
        assert math.isclose(v.data, math.exp(x - lse), rel_tol=1e-14)
        assert v._op == "softmax" and v._prev == set(xs)
    assert p[2].data > p[4].data > p[0].data  # order kept, even 1e-9 apart


def test_log_softmax_closed_form(engine):
    xs = [engine.Value(x) for x in LOGITS]
    lp = engine.module.log_softmax(xs)
    lse = lse_fsum(LOGITS)
    for v, x in zip(lp, LOGITS):
        assert math.isclose(v.data, x - lse, rel_tol=1e-15, abs_tol=1e-15)
        assert v._op == "log_softmax" and v._prev == set(xs)
    sm = engine.module.softmax(LOGITS)
    for v, p in zip(lp, sm):
        assert math.isclose(math.exp(v.data), p.data, rel_tol=1e-15)


def test_logsumexp_and_cross_entropy_closed_form(engine):
    m = engine.module
    lse = m.logsumexp(LOGITS)
    assert lse._op == "logsumexp"
    assert math.isclose(lse.data, lse_fsum(LOGITS), rel_tol=1e-15)
    for t in range(len(LOGITS)):
        ce = m.cross_entropy(LOGITS, t)
        assert ce._op == "cross_entropy"
        assert math.isclose(ce.data, lse_fsum(LOGITS) - LOGITS[t], rel_tol=1e-14)
        assert ce.data > 0
    assert m.logsumexp([2.5]).data == 2.5  # one input: m + log(1)
    assert m.cross_entropy([2.5], 0).data == 0.0
    assert m.softmax([-7.0])[0].data == 1.0


def test_numbers_become_leaves(engine):
    V = engine.Value
    a = V(0.5)
    p = engine.module.softmax([a, 2, 1.5])  # an int and a float among them
    assert len(p[0]._prev) == 3 and a in p[0]._prev
    assert sorted(c.data for c in p[0]._prev) == [0.5, 1.5, 2.0]
    assert p[0]._prev == p[1]._prev == p[2]._prev  # every output is over the same leaves
    p[1].backward()
    assert a.grad == pytest.approx(-p[1].data * p[0].data, rel=1e-15)


# ---- stability ---------------------------------------------------------------------------------

def test_logits_of_plus_minus_1000(engine):
    m = engine.module
    big = [1000.0, -1000.0, 999.0]
    xs = [engine.Value(x) for x in big]
    lse = m.logsumexp(xs)
    assert lse.data == 1000.0 + math.log(1.0 + math.exp(-1.0))  # m + log(s), s summed from the max
    p = m.softmax(xs)
    assert [v.data for v in p] == [1 / (1 + math.exp(-1)), 0.0, math.exp(-1) / (1 + math.exp(-1))]
    lp = m.log_softmax(xs)
    assert lp[1].data == pytest.approx(-2000.0 - math.log1p(math.exp(-1)), rel=1e-15)
    assert lp[0].data == pytest.approx(-math.log1p(math.exp(-1)), rel=1e-15)
    ce = m.cross_entropy(xs, 1)
    assert ce.data == pytest.approx(2000.0 + math.log1p(math.exp(-1)), rel=1e-15)
    loss = ce + lse + p[2] + lp[1]
    loss.backward()
    assert all(math.isfinite(x.grad) for x in xs)
    # d ce = p - onehot, d lse = p, d p2 = p2 ([2 == j] - p_j), d lp1 = [1 == j] - p
    p0, p2 = p[0].data, p[2].data
    assert xs[0].grad == pytest.approx(p0 + p0 + p2 * -p0 - p0, rel=1e-14)
    assert xs[1].grad == pytest.approx(-1 + 0 + 0 + 1, abs=1e-300)
    assert xs[2].grad == pytest.approx(p2 + p2 + p2 * (1 - p2) - p2, rel=1e-14)
    neg = m.softmax([-1000.0, -1000.0])
    assert [v.data for v in neg] == [0.5, 0.5]
    assert m.logsumexp([-1000.0, -1000.0]).data == -1000.0 + math.log(2.0)


def test_infinities_and_nan(engine):
    """As torch: an infinite max is not subtracted (inf - inf would be nan)."""
    m = engine.module
    inf = math.inf
    assert m.logsumexp([-inf, -inf]).data == -inf
    assert m.logsumexp([inf, 1.0]).data == inf
    assert m.logsumexp([-inf, 0.0]).data == 0.0
    assert [v.data for v in m.softmax([-inf, 0.0])] == [0.0, 1.0]
    assert all(math.isnan(v.data) for v in m.softmax([-inf, -inf]))
    assert math.isnan(m.logsumexp([1.0, math.nan]).data)
    assert math.isnan(m.logsumexp([math.nan, 1.0]).data)
    assert m.cross_entropy([-inf, 0.0], 1).data == 0.0
    assert m.cross_entropy([-inf, 0.0], 0).data == inf


# ---- backward ----------------------------------------------------------------------------------

def composite(m):
    """A loss that uses every node (and a repeated input), for gradient checks."""
    def f(a, b, c, d):
        xs = [a, b, c, d, b]
        p = m.softmax(xs)
        lp = m.log_softmax(xs)
        return (m.cross_entropy(xs, 2) * 0.7 + m.logsumexp(xs) * -0.3 + p[0] * 2.0 + p[4] * 0.5
                + lp[1] * 1.5 + lp[3] * -0.25)
    return f


@pytest.mark.parametrize("point", [[0.3, -1.2, 2.0, 0.9], [5.0, 5.0, 5.0, 5.0],
                                   [-3.0, 10.0, 0.5, 9.0]])
def test_gradients_match_finite_differences(engine, point):
    assert gradcheck(composite(engine.module), [engine.Value(x) for x in point],
                     eps=1e-6, atol=1e-8, rtol=1e-6)


def test_cross_entropy_gradient_is_p_minus_onehot(engine):
    m = engine.module
    xs = [engine.Value(x) for x in LOGITS]
    ce = m.cross_entropy(xs, 3)
    ce.backward()
    p = [v.data for v in m.softmax(LOGITS)]
    assert [x.grad for x in xs] == [pj - (j == 3) for j, pj in enumerate(p)]
    assert math.isclose(math.fsum(x.grad for x in xs), 0.0, abs_tol=1e-15)


def test_batch_mean(engine):
    """The mean over a batch is ordinary sum / n: its gradient is (p - onehot) / n per sample."""
    m = engine.module
    V = engine.Value
    rows = [[V(random.Random(i).uniform(-2, 2)) for _ in range(4)] for i in range(3)]
    targets = [0, 3, 1]
    loss = sum(m.cross_entropy(r, t) for r, t in zip(rows, targets)) / 3
    loss.backward()
    for r, t in zip(rows, targets):
        p = [v.data for v in m.softmax([x.data for x in r])]
        for j, x in enumerate(r):
            assert x.grad == pytest.approx((p[j] - (j == t)) / 3, rel=1e-14, abs=1e-17)


def test_repeated_input_sums_its_contributions(engine):
    m = engine.module
    a, b = engine.Value(0.5), engine.Value(-1.0)
    m.logsumexp([a, a, b]).backward()
    p = m.softmax([0.5, 0.5, -1.0])
    assert a.grad == p[0].data + p[1].data and b.grad == p[2].data


def test_local_backward_callable(engine):
    """_backward runs the node's local backward alone, as for every op (the lecture calls it)."""
    xs = [engine.Value(x) for x in (1.0, 2.0, 3.0)]
    ce = engine.module.cross_entropy(xs, 0)
    ce.grad = 2.0
    ce._backward()
    p = [v.data for v in engine.module.softmax([1.0, 2.0, 3.0])]
    assert [x.grad for x in xs] == [(p[0] - 1) * 2.0, p[1] * 2.0, p[2] * 2.0]


# ---- parity and torch ----------------------------------------------------------------------------

def run_everything(m, V, logits, seed):
    rng = random.Random(seed)
    xs = [V(x) for x in logits]
    outs = list(m.softmax(xs)) + list(m.log_softmax(xs)) + [m.logsumexp(xs)]
    outs += [m.cross_entropy(xs, t) for t in range(len(xs))]
    loss = sum((o * rng.uniform(-1, 1) for o in outs), V(0.0))
    loss.backward()
    return [o.data for o in outs] + [loss.data] + [x.grad for x in xs], [o._op for o in outs]


@pytest.mark.parametrize("seed", range(20))
def test_engines_agree_bit_for_bit(c_engine, ref, seed):
    rng = random.Random(seed)
    n = rng.randint(1, 12)
    scale = rng.choice([1.0, 10.0, 1000.0])
    logits = [rng.gauss(0, scale) for _ in range(n)]
    c_nums, c_ops = run_everything(c_engine.module, c_engine.Value, logits, seed)
    r_nums, r_ops = run_everything(ref.module, ref.Value, logits, seed)
    assert c_ops == r_ops
    assert [bits(x) for x in c_nums] == [bits(x) for x in r_nums]


FLOATS = st.one_of(st.floats(-1e4, 1e4), st.sampled_from([0.0, -0.0, 1000.0, -1000.0, 709.0,
                                                            -745.0, 1e-300, math.inf, -math.inf,
                                                            math.nan]))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), logits=st.lists(FLOATS, min_size=1, max_size=9))
def test_engines_agree_on_any_input(c_engine, ref, data, logits):
    """hypothesis: any logits (infinities, nan, +-0, huge), repeated inputs, numbers among the
    Values, any outputs back-propagated -- both engines give the same bits, or the same error."""
    n = len(logits)
    shared = data.draw(st.lists(st.integers(0, n - 1), max_size=n))  # positions fed one Value
    as_number = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    t = data.draw(st.integers(-1, n))
    picks = data.draw(st.lists(st.integers(0, 2 * n + 1), min_size=1, max_size=4))
    weights = data.draw(st.lists(st.floats(-2, 2), min_size=len(picks), max_size=len(picks)))

    def run(e):
        V, m = e.Value, e.module
        leaves = [V(x) for x in logits]
        items = [logits[k] if as_number[k] else leaves[k] for k in range(n)]
        for k in shared:
            items[k] = leaves[0]
        try:
            ce = m.cross_entropy(items, t)
        except IndexError as exc:
            ce = str(exc)
        outs = m.softmax(items) + m.log_softmax(items) + [m.logsumexp(items)]
        outs.append(ce if not isinstance(ce, str) else outs[-1])
        loss = sum((outs[p] * w for p, w in zip(picks, weights)), V(0.0))
        loss.backward()
        return ([bits(o.data) for o in outs] + [bits(loss.data)] + [bits(v.grad) for v in leaves],
                ce if isinstance(ce, str) else None)

    assert run(c_engine) == run(ref)


@needs_torch
@pytest.mark.parametrize("seed", range(10))
def test_against_torch_float64(engine, seed):
    import torch.nn.functional as F

    rng = random.Random(seed)
    n = rng.randint(2, 10)
    logits = [rng.gauss(0, 3.0) for _ in range(n)]
    if seed == 0:
        logits = [1000.0, -1000.0, 999.0, 0.0]
        n = 4
    t = rng.randrange(n)
    weights = [rng.uniform(-1, 1) for _ in range(2 * n + 2)]

    m = engine.module
    xs = [engine.Value(x) for x in logits]
    outs = m.softmax(xs) + m.log_softmax(xs) + [m.logsumexp(xs), m.cross_entropy(xs, t)]
    loss = sum((o * w for o, w in zip(outs, weights)), engine.Value(0.0))
    loss.backward()

    tx = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    touts = torch.cat([F.softmax(tx, 0), F.log_softmax(tx, 0), torch.logsumexp(tx, 0)[None],
                       F.cross_entropy(tx[None], torch.tensor([t]))[None]])
    (touts * torch.tensor(weights, dtype=torch.float64)).sum().backward()

    for o, to in zip(outs, touts.tolist()):
        assert math.isclose(o.data, to, rel_tol=1e-12, abs_tol=1e-300), (o._op, o.data, to)
    for x, g in zip(xs, tx.grad.tolist()):
        assert math.isclose(x.grad, g, rel_tol=1e-12, abs_tol=1e-15), (x.grad, g)


# ---- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_errors(engine, name):
    fn = getattr(engine.module, name)
    with pytest.raises(ValueError, match="empty"):
        fn([])
    with pytest.raises(ValueError, match="empty"):
        fn(iter(()))
    with pytest.raises(TypeError, match=f"{name}\\(\\) takes Values or real numbers, not 'str'"):
        fn([engine.Value(1.0), "2"])
    with pytest.raises(TypeError):
        fn([1.0, None])
    with pytest.raises(TypeError):
        fn(engine.Value(1.0))  # one Value is not a list


def test_cross_entropy_errors(engine):
    ce = engine.module.cross_entropy
    xs = [engine.Value(1.0), engine.Value(2.0), 3.0]
    for bad in (1.0, "1", True, None, [1]):
        with pytest.raises(TypeError, match="target must be an int class index"):
            ce(xs, bad)
    for bad in (3, -1, 10**30, -(10**30)):
        with pytest.raises(IndexError, match=f"target {bad} is out of range for 3 classes"):
            ce(xs, bad)
    with pytest.raises(ValueError, match="empty"):
        ce([], 0)
    with pytest.raises(TypeError, match="not 'str'"):
        ce([1.0, "x"], 0)

    class Index:  # anything with __index__ is a class index (numpy integers are)
        def __index__(self):
            return 2

    assert ce(xs, Index()).data == ce(xs, 2).data


def test_errors_leave_no_nodes(c_engine):
    """A failed call makes no node (the arena check after each test also looks)."""
    m = c_engine.module
    before = c_engine.arena_stats()["live"]
    for call in (lambda: m.softmax([1.0, 2.0, "x"]), lambda: m.cross_entropy([1.0, 2.0], 5),
                 lambda: m.log_softmax([])):
        with pytest.raises((TypeError, IndexError, ValueError)):
            call()
    assert c_engine.arena_stats()["live"] == before


def test_graph_is_freed(c_engine):
    m = c_engine.module
    before = c_engine.arena_stats()["live"]
    xs = [c_engine.Value(x) for x in LOGITS]
    p = m.softmax(xs + [2.0])
    loss = m.cross_entropy(p, 1)
    loss.backward()
    del xs, p, loss
    assert c_engine.arena_stats()["live"] == before


def test_python_backward_assigned(engine):
    """Assigning _backward makes it a Python-backward node that keeps its children and name."""
    xs = [engine.Value(x) for x in (1.0, 2.0)]
    out = engine.module.logsumexp(xs)
    calls = []
    out._backward = lambda: calls.append(1)
    out.backward()
    assert calls == [1] and out._op == "logsumexp" and out._prev == set(xs)
    assert [x.grad for x in xs] == [0.0, 0.0]


def test_draw_dot_shows_one_op_node_over_all_inputs(engine):
    graphviz = pytest.importorskip("graphviz")  # noqa: F841
    from micrograd_fast import draw_dot
    from test_viz import parse

    m = engine.module
    xs = [engine.Value(x, label=f"x{i}") for i, x in enumerate((1.0, 2.0, 3.0))]
    p = m.softmax(xs)
    loss = m.cross_entropy(p, 1) + m.logsumexp(m.log_softmax(xs[:2]))
    loss.backward()
    records, ops, edges = parse(draw_dot(loss))
    assert sorted(ops.values()) == sorted(["+", "cross_entropy", "logsumexp"] + ["softmax"] * 3
                                          + ["log_softmax"] * 2)
    into = {}
    for tail, head in edges:
        if head in ops:
            into.setdefault(head, []).append(records[tail].split(" |")[0])
    for name, label in ops.items():
        if label == "softmax":
            assert sorted(into[name]) == ["{ x0", "{ x1", "{ x2"]
        elif label == "log_softmax":
            assert sorted(into[name]) == ["{ x0", "{ x1"]
        elif label == "cross_entropy":
            assert len(into[name]) == 3


def test_readme_example():
    """The README's example prints what its comments say."""
    import contextlib
    import io
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = text.split("**Fused nodes for classification.**", 1)[1].split("```python\n", 1)[1]
    code = block.split("```", 1)[0]
    want = [m.group(1).split(":")[0].split(", no overflow")[0].strip()
            for m in re.finditer(r"print\(.*\)\s+# (.*)", code)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue().splitlines() == want
