"""gradcheck: backward's gradients against central finite differences, like torch's gradcheck.

It must pass on every op of both engines, and it must catch a wrong backward: a custom op whose
_backward is off by a factor of 2 raises GradcheckError naming the input and both numbers."""
import math
import random

import pytest

from micrograd_fast import gradcheck
from micrograd_fast.checks import GradcheckError
from mgf_examples import readme_expression

# (name, f, point): each op at a point away from kinks and domain edges
OPS = [
    ("add", lambda a, b: a + b, [0.3, -1.2]),
    ("add const", lambda a: a + 2.5, [0.3]),
    ("radd", lambda a: 2.5 + a, [0.3]),
    ("sub", lambda a, b: a - b, [0.3, -1.2]),
    ("rsub", lambda a: 1.5 - a, [0.3]),
    ("mul", lambda a, b: a * b, [0.3, -1.2]),
    ("rmul", lambda a: 3 * a, [0.7]),
    ("square (same Value twice)", lambda a: a * a, [-0.8]),
    ("truediv", lambda a, b: a / b, [0.3, -1.2]),
    ("truediv const", lambda a: a / 4.0, [0.3]),
    ("rtruediv", lambda a: 2.0 / a, [1.3]),
    ("neg", lambda a: -a, [0.3]),
    ("pow int", lambda a: a**3, [1.3]),
    ("pow negative", lambda a: a**-2, [1.3]),
    ("pow float", lambda a: a**0.5, [1.3]),
    ("pow Value", lambda a, b: a**b, [1.3, 0.7]),
    ("rpow", lambda a: 2**a, [0.7]),
    ("relu positive", lambda a: a.relu(), [0.4]),
    ("relu negative", lambda a: a.relu(), [-0.4]),
    ("tanh", lambda a: a.tanh(), [0.4]),
    ("exp", lambda a: a.exp(), [0.4]),
    ("log", lambda a: a.log(), [0.4]),
    ("sigmoid", lambda a: a.sigmoid(), [-0.4]),
    ("readme expression", None, [-4.0, 2.0]),  # micrograd's README, filled in below
]


readme = readme_expression


@pytest.mark.parametrize("name, f, point", OPS, ids=[op[0] for op in OPS])
def test_every_op_passes(engine, name, f, point):
    f = f or readme
    inputs = [engine.Value(x) for x in point]
    assert gradcheck(f, inputs) is True
    assert all(v.grad == 0.0 for v in inputs)  # gradcheck works on copies: inputs untouched


def test_fused_ops_pass(engine):
    def f(w0, w1, x0, x1, b):
        return engine.sum_values([engine.dot([w0, w1], [x0, x1], b).tanh(), w0 * x1], 0.5)

    assert gradcheck(f, [engine.Value(x) for x in (0.3, -0.8, 1.1, 0.6, -0.2)])


def test_neuron_passes(engine):
    """An MLP's output as a function of its input (weights fixed): the demo's network."""
    random.seed(3)
    model = engine.nn.MLP(3, [4, 4, 1])
    assert gradcheck(lambda *x: model(list(x)), [engine.Value(v) for v in (0.5, -1.0, 0.25)])


def wrong_square(Value):
    """A custom op x**2 built the lecture's way, whose _backward is off by a factor of 2."""
    def square(x):
        out = Value(x.data**2, (x,), "sq")

        def _backward():
            x.grad += 4 * x.data * out.grad  # should be 2 * x.data * out.grad

        out._backward = _backward
        return out
    return square


def right_square(Value):
    def square(x):
        out = Value(x.data**2, (x,), "sq")

        def _backward():
            x.grad += 2 * x.data * out.grad

        out._backward = _backward
        return out
    return square


def test_custom_backward_right_passes(engine):
    square = right_square(engine.Value)
    assert gradcheck(lambda x, y: square(x) * y + square(y), [engine.Value(1.5), engine.Value(-0.5)])


def test_catches_wrong_backward(engine):
    square = wrong_square(engine.Value)
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda x, y: square(x) * y + y, [engine.Value(1.5), engine.Value(-0.5)])
    err = info.value
    assert isinstance(err, RuntimeError)
    # input 0 is wrong (analytic 4*x*y = -3, the truth 2*x*y = -1.5); input 1 is right
    assert err.input_index == 0
    assert err.analytic == -3.0
    assert err.numeric == pytest.approx(-1.5, abs=1e-7)
    assert [m[1] for m in err.mismatches] == [0]
    message = str(err)
    assert "input 0 (x = 1.5): analytic -3.0, numeric -1.49999" in message
    assert "input 1" not in message


def test_raise_exception_false_returns_false(engine):
    square = wrong_square(engine.Value)
    assert gradcheck(square, [engine.Value(2.0)], raise_exception=False) is False
    assert gradcheck(right_square(engine.Value), [engine.Value(2.0)], raise_exception=False) is True


def test_catches_wrong_backward_of_a_subclass_op(engine):
    """Users add ops by subclassing Value; a wrong backward there is caught too."""
    class MyValue(engine.Value):
        def cube(self):
            out = MyValue(self.data**3, (self,), "cube")

            def _backward():
                self.grad += 3 * self.data * out.grad  # should be 3 * self.data**2

            out._backward = _backward
            return out

    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(lambda x: x.cube(), [MyValue(2.0)])
    assert gradcheck(lambda x: x.cube(), [MyValue(1.0)])  # right by chance at x = 1


def test_inputs_as_floats_values_or_single(engine):
    square = wrong_square(engine.Value)
    f = lambda x, y: (x * y).tanh() + x**2  # noqa: E731
    assert gradcheck(f, [0.3, -0.7])  # numbers: Values of the active engine
    assert gradcheck(f, (engine.Value(0.3), -0.7))  # mixed: the Value's class
    assert gradcheck(lambda x: x.exp(), 0.5)  # a single number
    assert gradcheck(lambda x: x.exp(), engine.Value(0.5))  # a single Value
    assert gradcheck(square, engine.Value(1.0), raise_exception=False) is False


def test_floats_use_the_given_values_class(engine):
    seen = []

    def f(x, y):
        seen.append((type(x), type(y)))
        return x * y

    gradcheck(f, [engine.Value(0.3), 2.0])
    assert set(seen) == {(engine.Value, engine.Value)}


def test_many_inputs_and_outputs(engine):
    def f(*xs):
        total = xs[0]
        for x in xs[1:]:
            total = total * x + x.tanh()
        return [total, xs[0] - xs[-1]]

    point = [0.1 * i - 0.35 for i in range(8)]
    assert gradcheck(f, point)
    square = wrong_square(engine.Value)
    with pytest.raises(GradcheckError, match=r"output 1, input 2 \(x = 0\.5\)"):
        gradcheck(lambda x, y, z: [x + y, square(z)], [engine.Value(v) for v in (0.1, 0.2, 0.5)])


def test_tolerances(engine):
    # relu at its kink: backward says 0 (x <= 0) or 1, the central difference says 0.5
    with pytest.raises(GradcheckError):
        gradcheck(lambda x: x.relu(), [engine.Value(0.0)])
    # an error of 1e-4 relative: caught with rtol=1e-5, accepted with the default rtol=1e-3
    def scaled(Value):
        def f(x):
            out = Value(3 * x.data, (x,), "scale")

            def _backward():
                x.grad += 3 * (1 + 1e-4) * out.grad

            out._backward = _backward
            return out
        return f
    f = scaled(engine.Value)
    assert gradcheck(f, [engine.Value(1.0)])
    assert not gradcheck(f, [engine.Value(1.0)], rtol=1e-5, atol=0.0, raise_exception=False)
    assert gradcheck(f, [engine.Value(1.0)], rtol=0.0, atol=1e-3)


def test_nan_never_agrees(engine):
    def broken(x):  # identity whose backward yields nan
        out = engine.Value(x.data, (x,), "id")

        def _backward():
            x.grad += math.nan * out.grad

        out._backward = _backward
        return out

    with pytest.raises(GradcheckError, match=r"input 0 \(x = 0.25\): analytic nan, numeric 0.99999"):
        gradcheck(broken, [engine.Value(0.25)])


def test_eps_is_the_step(engine):
    # numeric derivative of x**3 at 1 with step h: 3 + h**2 exactly -> off by 1e-2 at h = 0.1
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda x: x**3, [engine.Value(1.0)], eps=0.1, atol=0.0, rtol=1e-3)
    assert info.value.numeric == pytest.approx(3.01, rel=1e-9)
    assert gradcheck(lambda x: x**3, [engine.Value(1.0)], eps=0.1, atol=0.0, rtol=1e-2)


def test_upstream_micrograd_values():
    """gradcheck is engine-agnostic: upstream micrograd's Values work too."""
    micrograd_engine = pytest.importorskip("micrograd.engine")
    assert gradcheck(readme, [micrograd_engine.Value(-4.0), micrograd_engine.Value(2.0)])


def test_bad_arguments(engine):
    with pytest.raises(TypeError, match="must return a Value"):
        gradcheck(lambda x: x.data * 2, [1.0])
    with pytest.raises(ValueError, match="no inputs"):
        gradcheck(lambda: engine.Value(1.0), [])


def test_analytic_matches_closed_form(engine):
    # the reported numbers are the derivatives of x**2 * exp(x): the wrong one and the true one
    square = wrong_square(engine.Value)
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda x: square(x) * x.exp(), [engine.Value(0.7)])
    x = 0.7
    assert info.value.analytic == pytest.approx(4 * x * math.exp(x) + x * x * math.exp(x), rel=1e-12)
    assert info.value.numeric == pytest.approx(2 * x * math.exp(x) + x * x * math.exp(x), rel=1e-7)
