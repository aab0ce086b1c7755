"""Every operator, one at a time, on both engines.

For each op the forward value is checked against its closed form (the `math` module), the
gradient against the closed-form derivative and against a central finite difference computed
with the engine's own forward pass, and both numbers against the reference engine bit for bit.
Then the bad inputs: non-numbers, domain errors and overflow, and the extreme floats
(+-1e308, +-inf, nan), where the compiled engine must do exactly what the reference does.
"""
import decimal
import fractions
import math

import pytest

INF = math.inf
NAN = math.nan


def same(x, y):
    """Bit-level float equality: nan equals nan, and 0.0 is not -0.0."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return x == y and math.copysign(1.0, x) == math.copysign(1.0, y)


def outcome(fn):
    """What fn() does: ('ok', result) or ('raise', exception type)."""
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001 - the type is what we compare
        return ("raise", type(exc))


def same_outcome(got, want):
    if got[0] != want[0]:
        return False
    if got[0] == "raise":
        return got[1] is want[1]
    g, w = got[1], want[1]
    if isinstance(g, tuple):
        return len(g) == len(w) and all(same(a, b) for a, b in zip(g, w))
    return same(g, w)


def central_difference(f, x, h=1e-6):
    """(f(x+h) - f(x-h)) / 2h, with h scaled to x so large inputs are not swamped by rounding."""
    h = h * max(1.0, abs(x))
    return (f(x + h) - f(x - h)) / (2 * h)


# ---------------------------------------------------------------------------------------------
# Unary ops: (id, build(Value) -> Value, closed form f(x), derivative f'(x), sample points)
# ---------------------------------------------------------------------------------------------
GENERAL = [-2.3, -0.7, 0.4, 1.9, 3.1]  # no 0: relu's kink, and division
POSITIVE = [0.3, 0.8, 1.7, 4.2]

UNARY = [
    ("v+2.5", lambda v: v + 2.5, lambda x: x + 2.5, lambda x: 1.0, GENERAL),
    ("v+3", lambda v: v + 3, lambda x: x + 3, lambda x: 1.0, GENERAL),
    ("2.5+v", lambda v: 2.5 + v, lambda x: 2.5 + x, lambda x: 1.0, GENERAL),
    ("3+v", lambda v: 3 + v, lambda x: 3 + x, lambda x: 1.0, GENERAL),
    ("v-1.5", lambda v: v - 1.5, lambda x: x - 1.5, lambda x: 1.0, GENERAL),
    ("v-2", lambda v: v - 2, lambda x: x - 2, lambda x: 1.0, GENERAL),
    ("1.5-v", lambda v: 1.5 - v, lambda x: 1.5 - x, lambda x: -1.0, GENERAL),
    ("2-v", lambda v: 2 - v, lambda x: 2 - x, lambda x: -1.0, GENERAL),
    ("v*3", lambda v: v * 3, lambda x: x * 3, lambda x: 3.0, GENERAL),
    ("v*-2.5", lambda v: v * -2.5, lambda x: x * -2.5, lambda x: -2.5, GENERAL),
    ("3*v", lambda v: 3 * v, lambda x: 3 * x, lambda x: 3.0, GENERAL),
    ("-2.5*v", lambda v: -2.5 * v, lambda x: -2.5 * x, lambda x: -2.5, GENERAL),
    ("v/4", lambda v: v / 4, lambda x: x / 4, lambda x: 0.25, GENERAL),
    ("v/3.0", lambda v: v / 3.0, lambda x: x / 3.0, lambda x: 1 / 3.0, GENERAL),
    ("v/-0.7", lambda v: v / -0.7, lambda x: x / -0.7, lambda x: 1 / -0.7, GENERAL),
    ("4/v", lambda v: 4 / v, lambda x: 4 / x, lambda x: -4 / x**2, GENERAL),
    ("1.5/v", lambda v: 1.5 / v, lambda x: 1.5 / x, lambda x: -1.5 / x**2, GENERAL),
    ("-v", lambda v: -v, lambda x: -x, lambda x: -1.0, GENERAL),
    ("v**0", lambda v: v**0, lambda x: 1.0, lambda x: 0.0, GENERAL),
    ("v**1", lambda v: v**1, lambda x: x, lambda x: 1.0, GENERAL),
    ("v**2", lambda v: v**2, lambda x: x * x, lambda x: 2 * x, GENERAL),
    ("v**3", lambda v: v**3, lambda x: x * x * x, lambda x: 3 * x * x, GENERAL),
    ("v**-1", lambda v: v**-1, lambda x: 1 / x, lambda x: -1 / x**2, GENERAL),
    ("v**-2", lambda v: v**-2, lambda x: 1 / (x * x), lambda x: -2 / x**3, GENERAL),
    ("v**2.0", lambda v: v**2.0, lambda x: x * x, lambda x: 2 * x, GENERAL),
    ("v**-3.0", lambda v: v**-3.0, lambda x: x**-3, lambda x: -3 * x**-4, GENERAL),
    ("v**0.5", lambda v: v**0.5, math.sqrt, lambda x: 0.5 / math.sqrt(x), POSITIVE),
    ("v**1.5", lambda v: v**1.5, lambda x: x * math.sqrt(x), lambda x: 1.5 * math.sqrt(x),
     POSITIVE),
    ("v**-0.5", lambda v: v**-0.5, lambda x: 1 / math.sqrt(x), lambda x: -0.5 * x**-1.5,
     POSITIVE),
    ("v**(1/3)", lambda v: v ** (1 / 3), math.cbrt if hasattr(math, "cbrt") else
     (lambda x: x ** (1 / 3)), lambda x: (1 / 3) * x ** (-2 / 3), POSITIVE),
    ("2**v", lambda v: 2**v, lambda x: math.pow(2, x), lambda x: math.pow(2, x) * math.log(2),
     GENERAL),
    ("0.5**v", lambda v: 0.5**v, lambda x: math.pow(0.5, x),
     lambda x: math.pow(0.5, x) * math.log(0.5), GENERAL),
    ("e**v", lambda v: math.e**v, math.exp, math.exp, GENERAL),
    ("relu", lambda v: v.relu(), lambda x: max(x, 0.0), lambda x: 1.0 if x > 0 else 0.0,
     GENERAL),
    ("tanh", lambda v: v.tanh(), math.tanh, lambda x: 1 - math.tanh(x) ** 2, GENERAL),
    ("exp", lambda v: v.exp(), math.exp, math.exp, GENERAL),
    ("log", lambda v: v.log(), math.log, lambda x: 1 / x, POSITIVE),
    ("sigmoid", lambda v: v.sigmoid(), lambda x: 1 / (1 + math.exp(-x)),
     lambda x: math.exp(-x) / (1 + math.exp(-x)) ** 2, GENERAL),
]

UNARY_CASES = [
    pytest.param(build, f, df, x, id=f"{name}@{x}")
    for name, build, f, df, points in UNARY
    for x in points
]


@pytest.mark.parametrize("build, f, df, x", UNARY_CASES)
def test_unary_forward_and_gradient(engine, build, f, df, x):
    V = engine.Value
    a = V(x)
    out = build(a)
    assert isinstance(out.data, float)
    assert out.data == pytest.approx(f(x), rel=1e-15, abs=1e-300)
    out.backward()
    assert out.grad == 1.0
    assert isinstance(a.grad, float)
    # closed-form derivative: to rounding; finite difference: to the difference's own error
    assert a.grad == pytest.approx(df(x), rel=1e-13, abs=1e-15)
    numeric = central_difference(lambda t: build(V(t)).data, x)
    assert a.grad == pytest.approx(numeric, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("build, f, df, x", UNARY_CASES)
def test_unary_matches_reference_exactly(engine, ref, build, f, df, x):
    a, r = engine.Value(x), ref.Value(x)
    out, rout = build(a), build(r)
    assert same(out.data, rout.data)
    out.backward()
    rout.backward()
    assert same(a.grad, r.grad)


def lecture_tanh(x):
    """The lecture's tanh formula; 1.0 where its exp overflows."""
    try:
        e = math.exp(2 * x)
    except OverflowError:
        return 1.0
    return 1.0 if e == math.inf else (e - 1) / (e + 1)


def test_closed_forms_that_are_exact(engine):
    """Ops that are one IEEE operation give the correctly rounded result, bit for bit."""
    V = engine.Value
    for x in GENERAL + [0.1, 1e-300, 7e22]:
        assert (V(x) + 0.1).data == x + 0.1
        assert (0.1 + V(x)).data == 0.1 + x
        assert (V(x) - 0.3).data == x - 0.3
        assert (0.3 - V(x)).data == 0.3 - x
        assert (V(x) * 1.1).data == x * 1.1
        assert (1.1 * V(x)).data == 1.1 * x
        assert (V(x) / 8).data == x / 8  # a power of two: x * 0.125 is exact
        assert (-V(x)).data == -x
        assert V(x).tanh().data == lecture_tanh(x)
        assert V(x).relu().data == max(x, 0.0)
        assert (V(x) ** 2).data == x**2
    for x in POSITIVE:
        assert V(x).log().data == math.log(x)
        assert V(x).exp().data == math.exp(x)
        assert (V(x) ** 0.5).data == x**0.5


def test_division_is_multiplication_by_python_power(engine):
    """a / b is micrograd's a * b**-1 with Python's ** -- not a division, and not 1.0/b either
    (libm's pow(b, -1) and 1.0/b differ in the last bit for some b, e.g. 0.499)."""
    V = engine.Value
    xs = [0.499] + [k / 97 + 0.003 * k for k in range(1, 400)]
    for x in xs:
        inv = x**-1  # what micrograd computes
        assert (V(x) ** -1).data == inv
        assert (1 / V(x)).data == 1 * inv
        assert (V(1.0) / V(x)).data == 1.0 * inv
        assert (V(0.7) / V(x)).data == 0.7 * inv
        assert (V(0.7) / x).data == 0.7 * inv
        b = V(x)
        assert (b / b).data == x * inv


# ---------------------------------------------------------------------------------------------
# Binary ops between two Values: (id, build(a, b), f(x, y), df/dx, df/dy, sample points)
# ---------------------------------------------------------------------------------------------
PAIRS = [(-2.3, 0.7), (0.4, -1.9), (3.1, 2.2), (-0.6, -1.3)]
POSITIVE_PAIRS = [(0.3, 1.7), (2.5, -0.8), (1.2, 0.5), (4.0, -2.0)]

BINARY = [
    ("a+b", lambda a, b: a + b, lambda x, y: x + y, lambda x, y: 1.0, lambda x, y: 1.0, PAIRS),
    ("a-b", lambda a, b: a - b, lambda x, y: x - y, lambda x, y: 1.0, lambda x, y: -1.0, PAIRS),
    ("a*b", lambda a, b: a * b, lambda x, y: x * y, lambda x, y: y, lambda x, y: x, PAIRS),
    ("a/b", lambda a, b: a / b, lambda x, y: x / y, lambda x, y: 1 / y,
     lambda x, y: -x / y**2, PAIRS),
    ("a**b", lambda a, b: a**b, math.pow, lambda x, y: y * math.pow(x, y - 1),
     lambda x, y: math.pow(x, y) * math.log(x), POSITIVE_PAIRS),
]

BINARY_CASES = [
    pytest.param(build, f, dfx, dfy, x, y, id=f"{name}@{x},{y}")
    for name, build, f, dfx, dfy, points in BINARY
    for x, y in points
]


@pytest.mark.parametrize("build, f, dfx, dfy, x, y", BINARY_CASES)
def test_binary_forward_and_gradient(engine, ref, build, f, dfx, dfy, x, y):
    V = engine.Value
    a, b = V(x), V(y)
    out = build(a, b)
    assert out.data == pytest.approx(f(x, y), rel=1e-15)
    out.backward()
    assert a.grad == pytest.approx(dfx(x, y), rel=1e-13, abs=1e-15)
    assert b.grad == pytest.approx(dfy(x, y), rel=1e-13, abs=1e-15)
    num_x = central_difference(lambda t: build(V(t), V(y)).data, x)
    num_y = central_difference(lambda t: build(V(x), V(t)).data, y)
    assert a.grad == pytest.approx(num_x, rel=1e-6, abs=1e-8)
    assert b.grad == pytest.approx(num_y, rel=1e-6, abs=1e-8)
    # and bit for bit what the reference computes
    ra, rb = ref.Value(x), ref.Value(y)
    rout = build(ra, rb)
    rout.backward()
    assert same(out.data, rout.data)
    assert same(a.grad, ra.grad) and same(b.grad, rb.grad)


@pytest.mark.parametrize("k", [2, 3, -1, 0.5, 2.0])
def test_value_exponent_equals_number_exponent(engine, k):
    """a ** Value(k) gives the same data and d/da as a ** k."""
    V = engine.Value
    a1, a2, kv = V(1.7), V(1.7), V(k)
    o1, o2 = a1**kv, a2**k
    assert o1.data == o2.data
    o1.backward()
    o2.backward()
    assert a1.grad == a2.grad
    assert kv.grad == pytest.approx(1.7**k * math.log(1.7), rel=1e-14)


def _pow_values(V, x, y):
    a, b = V(x), V(y)
    out = a**b
    out.backward()
    return out.data, a.grad, b.grad


@pytest.mark.parametrize("x, y", [(0.0, 2.0), (0.0, 0.0), (0.0, 0.5), (-2.0, 3.0), (-2.0, 2.0),
                                  (-2.0, -1.0), (-0.0, 3.0)])
def test_value_power_edge_cases_match_reference(engine, ref, x, y):
    """a**b at a == 0 and a < 0: same data/grads (nan where d/db is undefined) or same exception.

    (0 ** Value(0)).backward() raises ZeroDivisionError, as micrograd's 0**0 does: the local
    derivative y * x**(y-1) needs 0**-1.
    """
    got = outcome(lambda: _pow_values(engine.Value, x, y))
    want = outcome(lambda: _pow_values(ref.Value, x, y))
    assert same_outcome(got, want), (got, want)


def test_value_power_gradients_at_zero_and_negative_base(engine):
    assert _pow_values(engine.Value, 0.0, 2.0) == (0.0, 0.0, 0.0)  # d/db = 0 where a == 0
    data, da, db = _pow_values(engine.Value, -2.0, 3.0)
    assert (data, da) == (-8.0, 12.0) and math.isnan(db)  # log(-2) undefined, as in torch
    with pytest.raises(ZeroDivisionError):
        _pow_values(engine.Value, 0.0, 0.0)


# ---------------------------------------------------------------------------------------------
# Accumulation: a node used several times gets the sum of all its contributions
# ---------------------------------------------------------------------------------------------
def test_a_plus_a(engine):
    a = engine.Value(3.0)
    b = a + a
    b.backward()
    assert b.data == 6.0
    assert a.grad == 2.0


def test_a_times_a(engine):
    a = engine.Value(-3.0)
    b = a * a
    b.backward()
    assert b.data == 9.0
    assert a.grad == -6.0


def test_reuse_accumulates(engine):
    V = engine.Value
    a, b = V(2.0), V(-3.0)
    c = a * b  # -6
    d = c + a  # -4
    e = d * c + a / b  # 24 - 2/3
    e.backward()
    # de/da = (b + 1) * c + d * b + 1/b ; de/db = a * c + d * a - a / b**2
    assert e.data == pytest.approx(24 - 2 / 3, rel=1e-15)
    assert a.grad == pytest.approx((-3 + 1) * -6 + -4 * -3 + 1 / -3, rel=1e-14)
    assert b.grad == pytest.approx(2 * -6 + -4 * 2 - 2 / 9, rel=1e-14)
    assert c.grad == d.data + c.data  # c feeds e twice: once directly, once through d


def test_backward_twice_accumulates(engine):
    """As in micrograd, backward() zeroes nothing: a second call accumulates on top of the first.

    The intermediate node a*b keeps its grad of 1 too, so it passes 2 down the second time:
    a gets 6 + (5*2 + 1) = 17 and b gets 2 + 2*2 = 6 (upstream micrograd gives the same).
    """
    V = engine.Value
    a, b = V(2.0), V(5.0)
    out = a * b + a
    out.backward()
    assert (a.grad, b.grad) == (6.0, 2.0)
    out.backward()
    assert (a.grad, b.grad) == (17.0, 6.0)


def test_leaf_backward(engine):
    a = engine.Value(4.5)
    a.backward()
    assert a.grad == 1.0 and type(a.grad) is float
    assert a.data == 4.5


def test_grad_of_unused_leaf_stays_zero(engine):
    V = engine.Value
    a, b, unused = V(1.0), V(2.0), V(3.0)
    (a * b).backward()
    assert unused.grad == 0.0 and type(unused.grad) is float


def test_number_operands_become_leaves_with_gradients(engine):
    """The Value made for a Python number is a real node: it gets a gradient too."""
    a = engine.Value(3.0)
    out = a * 7
    out.backward()
    (k,) = [c for c in out._prev if c is not a]
    assert k.data == 7.0
    assert k.grad == 3.0


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["x", "1.0", b"1", None, [1], (1,), {}, object(), 1j])
def test_constructor_rejects_non_numbers(engine, bad):
    with pytest.raises(TypeError):
        engine.Value(bad)


class MyFloat(float):
    pass


class MyInt(int):
    pass


@pytest.mark.parametrize("good, expect", [
    (True, 1.0), (False, 0.0), (3, 3.0), (-7, -7.0), (2**60, float(2**60)),
    (MyFloat(2.5), 2.5), (MyInt(4), 4.0), (fractions.Fraction(1, 4), 0.25),
    (decimal.Decimal("0.5"), 0.5), (INF, INF),
])
def test_real_numbers_accepted(engine, good, expect):
    v = engine.Value(good)
    assert type(v.data) is float and v.data == expect
    v.data = good
    assert type(v.data) is float and v.data == expect
    v.grad = good
    assert type(v.grad) is float and v.grad == expect


@pytest.mark.parametrize("bad", ["x", b"1", None, [1.0], object()])
def test_setters_reject_non_numbers(engine, bad):
    v = engine.Value(1.0)
    with pytest.raises(TypeError):
        v.data = bad
    with pytest.raises(TypeError):
        v.grad = bad
    assert (v.data, v.grad) == (1.0, 0.0)  # a rejected assignment changes nothing


class Weird:
    """Not a number, but float()-able: float(x) works, so it is accepted as a real (__float__)."""

    def __float__(self):
        return 1.25


@pytest.mark.parametrize("x", [
    10**400, -(10**400), fractions.Fraction(10**400, 3), decimal.Decimal("nan"),
    decimal.Decimal("-inf"), Weird(), 1j, "nan", bytearray(b"1"), MyFloat("nan"),
], ids=repr)
def test_odd_inputs_match_reference(engine, ref, x):
    """Whatever the reference does with an odd input -- accept it, or raise (which type) --
    the compiled engine does too, in the constructor and both setters."""
    def make(V):
        return V(x).data

    def set_data(V):
        v = V(0.0)
        v.data = x
        return v.data

    def set_grad(V):
        v = V(0.0)
        v.grad = x
        return v.grad

    for fn in (make, set_data, set_grad):
        got, want = outcome(lambda: fn(engine.Value)), outcome(lambda: fn(ref.Value))
        assert same_outcome(got, want), (fn.__name__, got, want)


ARITH = [
    ("+", lambda p, q: p + q), ("-", lambda p, q: p - q), ("*", lambda p, q: p * q),
    ("/", lambda p, q: p / q), ("**", lambda p, q: p**q),
]


@pytest.mark.parametrize("op", [op for _, op in ARITH], ids=[n for n, _ in ARITH])
@pytest.mark.parametrize("bad", ["x", None, [1.0], object()])
def test_operators_reject_non_numbers_like_float(engine, op, bad):
    """Value op non-number is a TypeError on both sides, as it is for a float."""
    with pytest.raises(TypeError):
        op(1.0, bad)  # the behaviour we copy
    with pytest.raises(TypeError):
        op(engine.Value(1.0), bad)
    with pytest.raises(TypeError):
        op(bad, engine.Value(1.0))


ODD_OPERANDS = [True, MyInt(3), MyFloat(0.5), fractions.Fraction(1, 3), decimal.Decimal("0.1"),
                Weird(), 10**400, 2**70, 1j, b"1", INF, -INF, NAN, -0.0]


@pytest.mark.parametrize("op", [op for _, op in ARITH], ids=[n for n, _ in ARITH])
@pytest.mark.parametrize("x", ODD_OPERANDS, ids=repr)
def test_odd_operands_match_reference(engine, ref, op, x):
    """Value op x and x op Value: the same result (or exception type) as the reference."""
    for left in (True, False):
        def run(V):
            out = op(V(2.0), x) if left else op(x, V(2.0))
            out.backward()
            return out.data, out.grad

        got, want = outcome(lambda: run(engine.Value)), outcome(lambda: run(ref.Value))
        assert same_outcome(got, want), (left, got, want)


def test_nan_and_inf_operands_are_numbers(engine):
    V = engine.Value
    assert math.isnan((V(1.0) + NAN).data)
    assert (V(1.0) * INF).data == INF
    assert (INF - V(1.0)).data == INF


# Each case: a thunk over Value, and the exception the math module / float raises for it.
ERRORS = [
    ("0**-1", lambda V: V(0) ** -1, ZeroDivisionError),
    ("0.0**-2", lambda V: V(0.0) ** -2, ZeroDivisionError),
    ("0**-0.5", lambda V: V(0.0) ** -0.5, ZeroDivisionError),
    ("0**V(-1)", lambda V: V(0.0) ** V(-1.0), ZeroDivisionError),
    ("1/V(0)", lambda V: 1 / V(0.0), ZeroDivisionError),
    ("V(1)/V(0)", lambda V: V(1.0) / V(0.0), ZeroDivisionError),
    ("V(1)/0", lambda V: V(1.0) / 0, ZeroDivisionError),
    ("V(1)/0.0", lambda V: V(1.0) / 0.0, ZeroDivisionError),
    ("log(0)", lambda V: V(0).log(), ValueError),
    ("log(-0.0)", lambda V: V(-0.0).log(), ValueError),
    ("log(-1)", lambda V: V(-1).log(), ValueError),
    ("log(-inf)", lambda V: V(-INF).log(), ValueError),
    ("exp(1000)", lambda V: V(1000).exp(), OverflowError),
    ("exp(710)", lambda V: V(710.0).exp(), OverflowError),
    ("(-8)**(1/3)", lambda V: V(-8) ** (1 / 3), ValueError),
    ("(-8)**0.5", lambda V: V(-8.0) ** 0.5, ValueError),
    ("(-8)**V(1/3)", lambda V: V(-8.0) ** V(1 / 3), ValueError),
    ("(-2)**v", lambda V: (-2) ** V(0.5), ValueError),
    ("1e308**2", lambda V: V(1e308) ** 2, OverflowError),
    ("10**V(400)", lambda V: 10 ** V(400.0), OverflowError),
]


@pytest.mark.parametrize("thunk, exc", [pytest.param(t, e, id=n) for n, t, e in ERRORS])
def test_domain_errors(engine, ref, thunk, exc):
    with pytest.raises(exc):
        thunk(engine.Value)
    with pytest.raises(exc):
        thunk(ref.Value)


def test_domain_errors_match_math_module():
    """The exception types above are the ones Python itself raises."""
    with pytest.raises(ZeroDivisionError):
        0.0 ** -1
    with pytest.raises(ValueError):
        math.log(0.0)
    with pytest.raises(ValueError):
        math.log(-1.0)
    with pytest.raises(OverflowError):
        math.exp(1000.0)
    with pytest.raises(ValueError):
        math.pow(-8.0, 1 / 3)
    with pytest.raises(OverflowError):
        1e308**2


def test_engine_usable_after_errors(engine):
    """A failed op leaves no half-built state behind: the next graph works normally."""
    V = engine.Value
    a = V(0.0)
    for bad in (lambda: a.log(), lambda: a**-1, lambda: V(1000).exp(), lambda: 1 / a):
        with pytest.raises((ValueError, ZeroDivisionError, OverflowError)):
            bad()
    out = (a + 2) * 3
    out.backward()
    assert (out.data, a.grad) == (6.0, 3.0)


EXTREMES = [1e308, -1e308, INF, -INF, NAN, 0.0, -0.0, 5e-324, -5e-324, 710.0, -710.0, 1e-8]

EXTREME_OPS = [
    ("tanh", lambda v: v.tanh()), ("sigmoid", lambda v: v.sigmoid()), ("exp", lambda v: v.exp()),
    ("log", lambda v: v.log()), ("relu", lambda v: v.relu()), ("neg", lambda v: -v),
    ("sq", lambda v: v**2), ("inv", lambda v: v**-1), ("sqrt", lambda v: v**0.5),
    ("2**v", lambda v: 2**v), ("v*v", lambda v: v * v), ("v+v", lambda v: v + v),
    ("v-v", lambda v: v - v), ("v/v", lambda v: v / v), ("v**v", lambda v: v**v),
    ("1/v", lambda v: 1 / v), ("v*2", lambda v: v * 2), ("v+1", lambda v: v + 1),
]


def _forward_backward(V, op, x):
    a = V(x)
    out = op(a)
    out.backward()
    return out.data, a.grad


@pytest.mark.parametrize("op", [op for _, op in EXTREME_OPS], ids=[n for n, _ in EXTREME_OPS])
@pytest.mark.parametrize("x", EXTREMES)
def test_extreme_inputs_match_reference(engine, ref, op, x):
    """Same data, same gradient, or the same exception type as the reference -- for every op."""
    got = outcome(lambda: _forward_backward(engine.Value, op, x))
    want = outcome(lambda: _forward_backward(ref.Value, op, x))
    assert same_outcome(got, want), (got, want)


@pytest.mark.parametrize("x, t, s", [
    (1e308, 1.0, 1.0), (-1e308, -1.0, 0.0), (INF, 1.0, 1.0), (-INF, -1.0, 0.0),
])
def test_tanh_sigmoid_saturate(engine, x, t, s):
    """Saturating ops stay finite at the extremes, with a zero gradient, like math.tanh."""
    a = engine.Value(x)
    th = a.tanh()
    th.backward()
    assert th.data == t == math.tanh(x) and a.grad == 0.0
    b = engine.Value(x)
    sg = b.sigmoid()
    sg.backward()
    assert sg.data == s and b.grad == 0.0


def test_nan_propagates(engine):
    for name in ("tanh", "sigmoid", "exp", "log", "relu"):
        a = engine.Value(NAN)
        out = getattr(a, name)()
        assert math.isnan(out.data), name
