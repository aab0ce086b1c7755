"""The fast paths of issue 9 give exactly the slow paths' results: leaves through the type call,
parameters() / zero_grad() in one C loop, and float stores into .data / .grad."""
import math
import random

import pytest

import micrograd_fast.engine
import micrograd_fast.nn


def test_leaf_from_every_kind_of_number(engine):
    V = engine.Value
    numpy = pytest.importorskip("numpy")
    cases = [(1.5, 1.5), (2, 2.0), (-0.0, -0.0), (True, 1.0), (10**20, 1e20),
             (numpy.float64(0.1), 0.1), (numpy.float32(0.1), float(numpy.float32(0.1))),
             (numpy.int64(-3), -3.0), (math.inf, math.inf)]
    for given, expected in cases:
        v = V(given)
        assert type(v.data) is float and v.data == expected and v.grad == 0.0
        assert math.copysign(1.0, v.data) == math.copysign(1.0, expected)
        assert v._prev == set() and v._op == "" and v.label == ""
    assert math.isnan(V(math.nan).data)
    assert [v.data for v in map(V, [0.25, 1, numpy.float64(3.5)])] == [0.25, 1.0, 3.5]


def test_float_subclass_with_own_conversion_is_asked(engine):
    class Weird(float):
        def __float__(self):
            return 42.0

    assert engine.Value(Weird(1.0)).data == 42.0


def test_numpy_float64_reads_its_double_and_its_subclasses_are_asked(engine):
    """numpy.float64 is read directly (its float() is its stored double); a subclass of it with
    a __float__ of its own is still asked by the constructor, as float() would -- before and
    after a plain float64 was seen -- while an operator reads the number it holds, as float's
    own operators (and numpy's, in micrograd's data + other.data) do."""
    numpy = pytest.importorskip("numpy")

    class Weird64(numpy.float64):
        def __float__(self):
            return 42.0

    V = engine.Value
    assert V(Weird64(1.0)).data == 42.0 == float(Weird64(1.0))
    for x in (0.1, -0.0, 1e308, math.inf, 5e-324):
        v = V(numpy.float64(x))
        assert v.data == x and math.copysign(1.0, v.data) == math.copysign(1.0, x)
        assert (V(2.0) * numpy.float64(x)).data == 2.0 * x
    assert math.isnan(V(numpy.float64(math.nan)).data)
    assert V(Weird64(1.0)).data == 42.0
    assert (V(1.0) + Weird64(1.0)).data == 2.0 == 1.0 + Weird64(1.0)


@pytest.mark.parametrize("base", [float, int])
def test_operand_of_a_number_subclass_is_the_number_it_holds(engine, base):
    """float's operators read a float (or int) subclass's stored number, not its __float__;
    micrograd's arithmetic on .data does too. So do every operator and dot()."""
    class Odd(base):
        def __float__(self):
            return 9.0

    V, o = engine.Value, Odd(1)
    two = V(2.0)
    got = [(two + o).data, (o + two).data, (two * o).data, (o * two).data, (two - o).data,
           (o - two).data, (two / o).data, (o / two).data, (two ** o).data, (o ** two).data,
           engine.dot([two], [o], o).data]
    assert got == [3.0, 3.0, 2.0, 2.0, 1.0, -1.0, 2.0, 0.5, 2.0, 1.0, 3.0]
    assert V(o).data == 9.0  # the constructor takes float(x), as documented


def test_subtracting_a_numpy_unsigned_int_does_not_wrap_around(engine):
    """x - n is computed as x + (-n) (micrograd's graph), with -n negated as a float: numpy's
    unsigned ints would wrap around in their own type (micrograd gives 255.0 for 2 - uint8(3)).
    A zero keeps the sign its own type gives it: 0.0 - 0 is 0.0, 0.0 - 0.0 is 0.0, and
    -0.0 - 0 is 0.0, as micrograd's -0.0 + (-0) is."""
    numpy = pytest.importorskip("numpy")
    V = engine.Value
    class Sub(V):  # (a subclass's - goes through its own +)
        pass

    for n in (numpy.uint8(3), numpy.uint16(3), numpy.uint32(3), numpy.uint64(3)):
        out = V(2.0) - n
        assert out.data == -1.0 == 2.0 - n == (Sub(2.0) - n).data
        out.backward()
    assert (V(0.0) - numpy.int64(-2**63)).data == 2.0**63
    for a, n, sign in [(-0.0, 0, 1.0), (-0.0, numpy.uint8(0), 1.0), (-0.0, 0.0, -1.0),
                       (-0.0, numpy.float32(0.0), -1.0), (-0.0, False, 1.0)]:
        assert math.copysign(1.0, (V(a) - n).data) == sign, (a, n)


@pytest.mark.parametrize("bad, error", [("x", TypeError), (b"1", TypeError), (None, TypeError),
                                        (1j, TypeError), (10**400, OverflowError)])
def test_leaf_rejects_what_float_arithmetic_rejects(engine, bad, error):
    with pytest.raises(error):
        engine.Value(bad)


def test_constructor_arguments_other_than_one_number(engine):
    V = engine.Value
    a, b = V(2.0), V(3.0)
    v = V(5.0, (a, b), "+", "v")
    assert (v.data, v._op, v.label, v._prev) == (5.0, "+", "v", {a, b})
    w = V(data=1.0, label="w")
    assert (w.data, w.label) == (1.0, "w")
    assert V(1.0, _op="leaf")._op == "leaf"
    with pytest.raises(TypeError):
        V()
    with pytest.raises(TypeError):
        V(1.0, (), "", "", "extra")
    with pytest.raises(TypeError):
        V(1.0, colour="red")


def test_subclass_constructor_runs_its_own_init(engine):
    class Named(engine.Value):
        def __init__(self, data, name="anon"):
            super().__init__(data, label=name)
            self.name = name

    n = Named(2)
    assert (type(n), n.data, n.label, n.name) == (Named, 2.0, "anon", "anon")
    m = Named(3.0, name="m") * 2
    assert m.data == 6.0


def test_stores_into_data_and_grad(engine):
    V = engine.Value
    p = V(1.0)
    p.data = 2.5
    p.grad = -0.5
    p.data -= 0.1 * p.grad
    assert (p.data, p.grad) == (2.5 + 0.05, -0.5)
    p.data = 3  # an int is stored as a float
    p.grad = True
    assert (p.data, p.grad) == (3.0, 1.0) and type(p.data) is float
    with pytest.raises(TypeError):
        p.data = "x"
    assert p.data == 3.0


def test_subclass_property_override_is_honoured(engine):
    class Clamped(engine.Value):
        @property
        def data(self):
            return engine.Value.data.__get__(self)

        @data.setter
        def data(self, x):
            engine.Value.data.__set__(self, min(float(x), 1.0))

    c = Clamped(0.5)
    c.data = 7.0
    assert c.data == 1.0


def _mlp(engine, seed=7):
    random.seed(seed)
    return engine.nn.MLP(3, [4, 4, 1])


def test_parameters_in_micrograd_order(engine):
    model = _mlp(engine)
    expected = [p for layer in model.layers for n in layer.neurons for p in n.w + [n.b]]
    got = model.parameters()
    assert len(got) == 4 * 4 + 4 * 5 + 5 == len(expected)
    assert all(a is b for a, b in zip(got, expected))
    # a fresh list every call, as micrograd's
    assert got is not model.parameters() and got == model.parameters()


def test_parameters_honour_subclasses_and_replaced_fields(engine):
    model = _mlp(engine)
    extra = engine.Value(9.0)

    class Tied(engine.nn.Neuron):
        def parameters(self):
            return super().parameters() + [extra]

    layer = model.layers[1]
    layer.neurons[2].__class__ = Tied
    fresh = [engine.Value(0.5), engine.Value(0.25), engine.Value(0.0), engine.Value(1.0)]
    layer.neurons[0].w = fresh  # replaced weights are read at call time
    params = layer.parameters()
    assert params[:4] == fresh and params[4] is layer.neurons[0].b
    assert params.count(extra) == 1 and params[15] is extra
    assert len(params) == 4 * 5 + 1


def test_zero_grad_sets_every_parameter_grad_to_zero(engine):
    model = _mlp(engine)
    out = model([0.5, -1.0, 2.0])
    out.backward()
    params = model.parameters()
    assert any(p.grad != 0 for p in params)
    model.zero_grad()
    assert all(p.grad == 0.0 and type(p.grad) is float for p in params)
    assert out.grad == 1.0  # only the parameters are zeroed


def test_zero_grad_honours_overridden_parameters(engine):
    class Two(engine.nn.Module):
        def __init__(self):
            self.a, self.b, self.c = engine.Value(1.0), engine.Value(2.0), engine.Value(3.0)

        def parameters(self):
            return [self.a, self.b]

    m = Two()
    for v in (m.a, m.b, m.c):
        v.grad = 5.0
    m.zero_grad()
    assert (m.a.grad, m.b.grad, m.c.grad) == (0.0, 0.0, 5.0)


def test_zero_grads_checks_everything_before_changing_anything(engine):
    a, b = engine.Value(1.0), engine.Value(2.0)
    a.grad = b.grad = 3.0
    with pytest.raises(TypeError):
        engine.module.zero_grads([a, 1.0, b])
    assert (a.grad, b.grad) == (3.0, 3.0)
    engine.module.zero_grads(v for v in (a, b))
    assert (a.grad, b.grad) == (0.0, 0.0)


def test_the_active_engine_exports_the_helpers():
    engine = micrograd_fast.engine
    assert engine.zero_grads is getattr(engine, "zero_grads")
    assert micrograd_fast.nn.Layer.parameters  # nn reaches them through the engine module


def test_zero_grad_of_layers_and_mlps_honours_overrides(engine):
    model = _mlp(engine)
    extra = engine.Value(1.0)

    class Partial(engine.nn.Layer):  # zeroes only its first neuron's parameters, plus extra
        def parameters(self):
            return self.neurons[0].parameters() + [extra]

    layer = model.layers[1]
    layer.__class__ = Partial
    everything = [p for l in model.layers for n in l.neurons for p in n.w + [n.b]]
    for p in everything + [extra]:
        p.grad = 2.0
    model.zero_grad()  # MLP.parameters is not overridden: each layer's zero_grad decides
    first = set(map(id, layer.neurons[0].parameters()))
    untouched = [p for n in layer.neurons[1:] for p in n.w + [n.b]]
    assert extra.grad == 0.0 and all(p.grad == 2.0 for p in untouched)
    assert all(p.grad == 0.0 for p in everything if id(p) in first or p not in untouched)
    # appending into a given list
    out = [extra]
    assert engine.module.neuron_parameters(model.layers[0].neurons, engine.nn.Neuron, out) is out
    assert out[1:] == model.layers[0].parameters()

    class OnlyLast(engine.nn.MLP):
        def parameters(self):
            return self.layers[-1].parameters()

    m2 = _mlp(engine)
    m2.__class__ = OnlyLast
    for p in [p for l in m2.layers for n in l.neurons for p in n.w + [n.b]]:
        p.grad = 3.0
    m2.zero_grad()
    assert all(p.grad == 0.0 for p in m2.layers[-1].parameters())
    assert all(p.grad == 3.0 for l in m2.layers[:-1] for n in l.neurons for p in n.w + [n.b])
