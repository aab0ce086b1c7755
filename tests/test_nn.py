"""nn on both engines: the same parameters, reprs, forward numbers and training losses as upstream
micrograd's nn (when installed) and as the reference engine's."""
import functools
import math
import random

import pytest

from micrograd_fast import demo

SEEDS = [0, 1, 1337]


def upstream_nn():
    return pytest.importorskip("micrograd.nn")


def build(nn, seed, nin=3, nouts=(4, 4, 1)):
    random.seed(seed)
    return nn.MLP(nin, list(nouts))


@pytest.mark.parametrize("seed", SEEDS)
def test_parameters_equal_upstream_and_reference(engine, ref, seed):
    model = build(engine.nn, seed)
    want_ref = [p.data for p in build(ref.nn, seed).parameters()]
    got = [p.data for p in model.parameters()]
    assert got == want_ref
    assert all(type(x) is float for x in got)
    assert got == [p.data for p in build(upstream_nn(), seed).parameters()]


@pytest.mark.parametrize("seed", SEEDS)
def test_random_state_after_init_equals_upstream(engine, seed):
    # the same number of draws, in the same order: the next draw matches too
    build(engine.nn, seed)
    ours = random.random()
    build(upstream_nn(), seed)
    assert ours == random.random()


@pytest.mark.parametrize("nin, nouts", [(3, [4, 4, 1]), (2, [16, 16, 1]), (1, [1]), (5, [3, 2])])
def test_reprs_equal_upstream(engine, nin, nouts):
    mg = upstream_nn()
    random.seed(0)
    ours = engine.nn.MLP(nin, nouts)
    random.seed(0)
    theirs = mg.MLP(nin, nouts)
    assert repr(ours) == repr(theirs)
    assert str(ours) == str(theirs)
    for lo, lt in zip(ours.layers, theirs.layers):
        assert repr(lo) == repr(lt)
        assert [repr(n) for n in lo.neurons] == [repr(n) for n in lt.neurons]
    assert repr(engine.nn.Neuron(3)) == "ReLUNeuron(3)"
    assert repr(engine.nn.Neuron(2, nonlin=False)) == "LinearNeuron(2)"
    assert repr(engine.nn.Layer(2, 2)) == "Layer of [ReLUNeuron(2), ReLUNeuron(2)]"


def test_mlp_repr_literal(engine):
    model = build(engine.nn, 0, 2, (2, 1))
    assert repr(model) == ("MLP of [Layer of [ReLUNeuron(2), ReLUNeuron(2)], "
                           "Layer of [LinearNeuron(2)]]")


def test_parameters_order_and_count(engine):
    model = build(engine.nn, 4)
    params = model.parameters()
    assert len(params) == (3 * 4 + 4) + (4 * 4 + 4) + (4 * 1 + 1) == 41
    expected = [p for layer in model.layers for n in layer.neurons for p in n.w + [n.b]]
    assert len(expected) == 41
    assert all(p is q for p, q in zip(params, expected))
    assert len({id(p) for p in params}) == 41
    assert all(isinstance(p, engine.Value) for p in params)
    # biases start at zero, weights in [-1, 1]
    for layer in model.layers:
        for n in layer.neurons:
            assert n.b.data == 0.0
            assert all(-1.0 <= w.data <= 1.0 for w in n.w)
    # nonlinearity: ReLU everywhere except the last layer
    assert [n.nonlin for layer in model.layers for n in layer.neurons] == [True] * 8 + [False]
    # Module base class
    assert engine.nn.Module().parameters() == []


def test_zero_grad(engine):
    model = build(engine.nn, 2)
    out = model([1.0, -2.0, 0.5])
    (out * out).backward()
    assert any(p.grad != 0.0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0.0 and type(p.grad) is float for p in model.parameters())
    # data untouched
    assert [p.data for p in model.parameters()] == [p.data for p in build(engine.nn, 2).parameters()]


def test_layer_output_shapes(engine):
    random.seed(3)
    one = engine.nn.Layer(3, 1)
    out = one([1.0, 2.0, 3.0])
    assert isinstance(out, engine.Value)
    two = engine.nn.Layer(3, 2)
    out2 = two([1.0, 2.0, 3.0])
    assert isinstance(out2, list) and len(out2) == 2
    assert all(isinstance(o, engine.Value) for o in out2)
    mlp = engine.nn.MLP(3, [4, 2])
    assert isinstance(mlp([1.0, 2.0, 3.0]), list)
    assert isinstance(build(engine.nn, 3)([1.0, 2.0, 3.0]), engine.Value)


def test_neuron_forward_is_b_plus_weighted_sum_left_to_right(engine):
    random.seed(5)
    n = engine.nn.Neuron(4, nonlin=False)
    n.b.data = 0.3
    x = [0.1, -0.7, 2.5, 1e-3]
    acc = n.b.data
    for w, xi in zip(n.w, x):
        acc = acc + w.data * xi
    assert n(x).data == acc
    relu = engine.nn.Neuron(4)
    relu.b.data = -100.0
    assert relu(x).data == 0.0


def test_layer_of_neuron_subclasses_uses_their_call(engine, ref):
    """A Layer whose neurons are a user's Neuron subclass (here: tanh instead of ReLU) runs
    their __call__, whatever shortcut the engine takes for plain Neurons."""
    def run(nn, Value):
        class TanhNeuron(nn.Neuron):
            def __call__(self, x):
                act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
                return act.tanh()

        random.seed(8)
        layer = nn.Layer(3, 4)
        layer.neurons = [TanhNeuron(3) for _ in range(4)]
        layer.neurons[2] = nn.Neuron(3, nonlin=False)  # mixed with a plain one
        xs = [Value(0.5), Value(-1.0), Value(2.0)]
        outs = layer(xs)
        assert [o._op for o in outs] == ['tanh', 'tanh', 'dot', 'tanh']
        total = sum(outs, Value(0.0))
        total.backward()
        return [o.data for o in outs], [p.grad for p in layer.parameters()], [x.grad for x in xs]

    got = run(engine.nn, engine.Value)
    assert got == run(ref.nn, ref.Value)
    random.seed(8)
    engine.nn.Layer(3, 4)
    ws = [[random.uniform(-1, 1) for _ in range(3)] for _ in range(2)]
    x = [0.5, -1.0, 2.0]
    e = math.exp(2 * sum((w * xi for w, xi in zip(ws[0], x)), 0.0))
    assert got[0][0] == (e - 1) / (e + 1)  # the lecture's tanh


INPUTS = [[1.0, -2.0, 0.5], [0.3, 0.1, -0.9], [2.0, 3.0, -1.0], [-0.25, 0.75, 1.5]]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("as_values", [False, True], ids=["floats", "values"])
def test_forward_and_grads_equal_upstream(engine, ref, seed, as_values):
    mg_engine = pytest.importorskip("micrograd.engine")
    mg = upstream_nn()

    def run(nn, Value):
        model = build(nn, seed)
        outs, grads = [], []
        for x in INPUTS:
            xs = [Value(v) for v in x] if as_values else x
            out = model(xs)
            model.zero_grad()
            out.backward()
            outs.append(out.data)
            grads.append([p.grad for p in model.parameters()])
        return outs, grads

    outs, grads = run(engine.nn, engine.Value)
    ref_outs, ref_grads = run(ref.nn, ref.Value)
    mg_outs, mg_grads = run(mg, mg_engine.Value)
    # forward: the fused node sums from b, left to right -- bit-identical to micrograd's sum()
    assert outs == ref_outs == mg_outs
    assert grads == ref_grads
    for g, mg_g in zip(grads, mg_grads):
        assert g == pytest.approx(mg_g, rel=1e-12, abs=1e-300)


# ---- the moons demo: a few SGD steps ---------------------------------------------------------

def run_demo(Value, nn, steps, n_samples, nouts, total_steps=100, seed=1337):
    X, y = demo.make_moons(n_samples=n_samples, noise=0.1, seed=seed)
    random.seed(seed)
    model = nn.MLP(2, list(nouts))
    history = [demo.train_step(model, X, y, Value, k, total_steps) for k in range(steps)]
    return history, [p.data for p in model.parameters()]


@functools.lru_cache(maxsize=None)
def upstream_demo(steps, n_samples, nouts):
    pytest.importorskip("micrograd.nn")
    Value, nn = demo.load_engine("micrograd")
    return run_demo(Value, nn, steps, n_samples, nouts)


SMALL = dict(n_samples=30, nouts=(8, 8, 1))


def test_demo_steps_identical_on_both_engines(engine, ref):
    got = run_demo(engine.Value, engine.nn, 10, **SMALL)
    want = run_demo(ref.Value, ref.nn, 10, **SMALL)
    assert got == want
    losses = [loss for loss, _ in got[0]]
    assert losses[-1] < losses[0]  # it learns


def test_demo_steps_equal_upstream_small(engine):
    history, params = run_demo(engine.Value, engine.nn, 5, **SMALL)
    mg_history, mg_params = upstream_demo(5, SMALL["n_samples"], SMALL["nouts"])
    assert [acc for _, acc in history] == [acc for _, acc in mg_history]
    for (loss, _), (mg_loss, _) in zip(history, mg_history):
        assert loss == pytest.approx(mg_loss, rel=1e-12)
    assert params == pytest.approx(mg_params, rel=1e-12, abs=1e-15)


@pytest.mark.slow
def test_demo_steps_equal_upstream_full_size(engine, ref):
    """The README's demo model, MLP(2, [16, 16, 1]) on 100 points; upstream costs ~1 s a step."""
    full = dict(n_samples=100, nouts=(16, 16, 1))
    history, params = run_demo(engine.Value, engine.nn, 2, **full)
    assert (history, params) == run_demo(ref.Value, ref.nn, 2, **full)
    mg_history, mg_params = upstream_demo(2, full["n_samples"], full["nouts"])
    for (loss, acc), (mg_loss, mg_acc) in zip(history, mg_history):
        assert acc == mg_acc
        assert loss == pytest.approx(mg_loss, rel=1e-12)
    assert params == pytest.approx(mg_params, rel=1e-12, abs=1e-15)


# ---- activations: Neuron(nin, nonlin=True, act='relu'), MLP(nin, nouts, act='relu') -------------

ACTS = ["relu", "tanh", "sigmoid"]


def test_activation_reprs(engine):
    nn = engine.nn
    assert repr(nn.Neuron(2, act="relu")) == "ReLUNeuron(2)"
    assert repr(nn.Neuron(2, act="tanh")) == "TanhNeuron(2)"
    assert repr(nn.Neuron(2, act="sigmoid")) == "SigmoidNeuron(2)"
    assert repr(nn.Neuron(2, nonlin=False, act="tanh")) == "LinearNeuron(2)"
    assert repr(nn.Layer(2, 2, act="sigmoid")) == "Layer of [SigmoidNeuron(2), SigmoidNeuron(2)]"
    assert repr(nn.MLP(2, [2, 1], act="tanh")) == (
        "MLP of [Layer of [TanhNeuron(2), TanhNeuron(2)], Layer of [LinearNeuron(2)]]")


def test_bad_activation_is_a_value_error(engine):
    nn = engine.nn
    for make in (lambda: nn.Neuron(2, act="gelu"), lambda: nn.Layer(2, 3, act="ReLU"),
                 lambda: nn.MLP(2, [3, 1], act=None)):
        with pytest.raises(ValueError, match="act is 'relu', 'tanh' or 'sigmoid'"):
            make()
    random.seed(0)
    layer = nn.Layer(2, 3)
    layer.neurons[1].act = "exp"  # changed after construction: the call says so, in both paths
    with pytest.raises(ValueError, match="unknown activation 'exp'"):
        layer([1.0, 2.0])
    with pytest.raises(ValueError, match="unknown activation 'exp'"):
        layer.neurons[1]([1.0, 2.0])


@pytest.mark.parametrize("act", ACTS)
def test_activation_keeps_micrograds_draws(engine, act):
    """act changes no random draw: the parameters are those of the default (micrograd's)."""
    got = [p.data for p in (random.seed(7), engine.nn.MLP(3, [4, 2], act=act))[1].parameters()]
    want = [p.data for p in build(engine.nn, 7, 3, (4, 2)).parameters()]
    assert got == want
    assert random.random() == (random.seed(7), build(engine.nn, 7, 3, (4, 2)), random.random())[2]


@pytest.mark.parametrize("act", ACTS)
def test_layer_fast_path_equals_calling_the_neurons(engine, ref, act):
    """The engine's layer() computes plain Neurons itself: the same nodes (ops, numbers, order)
    as calling each Neuron, on both engines, bit for bit."""
    def run(e, fast):
        random.seed(11)
        model = e.nn.MLP(3, [5, 4, 2], act=act)
        x = [e.Value(v) for v in (0.4, -1.3, 2.2)]
        h = x
        for layer in model.layers:
            h = layer(h) if fast else [n(h) for n in layer.neurons]
        ops = [o._op for o in h] + sorted(c._op for o in h for c in o._prev)
        loss = h[0] * h[1] + h[1]
        loss.backward()
        return ops, [o.data for o in h], [p.grad for p in model.parameters()] + [v.grad for v in x]

    got = run(engine, True)
    assert got == run(engine, False)
    assert got == run(ref, False)
    hidden = {"relu": "ReLU", "tanh": "tanh", "sigmoid": "sigmoid"}[act]
    assert got[0][:2] == ["dot", "dot"] and set(got[0][2:]) == {"", hidden}  # bias leaves: ''


def test_mlp_fast_path_equals_calling_the_layers(engine, ref, monkeypatch):
    """The engine's mlp() computes plain Layers itself: the same nodes, numbers and gradients as
    calling each layer -- with a user's Layer subclass among them (called), a weight that is a
    plain number (the general dot path) and a Layer.__call__ replaced on the class (honoured)."""
    def run(e, how):
        random.seed(12)
        model = e.nn.MLP(3, [4, 4, 1])

        class Doubling(e.nn.Layer):
            def __call__(self, x):
                return [2 * v for v in super().__call__(x)]

        middle = Doubling(4, 4)
        middle.neurons = model.layers[1].neurons
        model.layers[1] = middle
        model.layers[0].neurons[2].w[1] = 0.75  # a number among the weights
        x = [e.Value(v) for v in (0.4, -1.3, 2.2)]
        if how == "layers":
            h = x
            for layer in model.layers:
                h = layer(h)
        else:
            h = model(x)
        h.backward()
        params = [p for p in model.parameters() if not isinstance(p, float)]
        return h._op, h.data, [p.grad for p in params] + [v.grad for v in x]

    got = run(engine, "mlp")
    assert got == run(engine, "layers") == run(ref, "layers")
    calls = []
    original = engine.nn.Layer.__call__

    def counting(self, x):
        calls.append(self)
        return original(self, x)

    monkeypatch.setattr(engine.nn.Layer, "__call__", counting)
    assert run(engine, "mlp") == got
    assert len(calls) == 3  # every layer (the subclass through super()) via the replaced one


def test_neuron_without_act_attribute_is_relu(engine):
    """A Neuron pickled before `act` existed has no act in its dict: it is a ReLU neuron."""
    import copy

    random.seed(2)
    layer = engine.nn.Layer(2, 2)
    for n in layer.neurons:
        del n.__dict__["act"]
    assert repr(layer) == "Layer of [ReLUNeuron(2), ReLUNeuron(2)]"
    outs = layer([engine.Value(-5.0), engine.Value(0.5)])
    assert [o._op for o in outs] == ["ReLU", "ReLU"]
    again = copy.deepcopy(engine.nn.Neuron(2, act="tanh"))  # as pickle: through __dict__
    assert again.act == "tanh" and again([1.0, 2.0])._op == "tanh"


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_training_with_other_activations_matches_reference(engine, ref, act):
    def losses(e):
        random.seed(4)
        model = e.nn.MLP(2, [8, 1], act=act)
        X, y = demo.make_moons(20, seed=4)
        out = []
        for k in range(3):
            loss, _ = demo.train_step(model, X, y, e.Value, k, 3)
            out.append(loss)
        return out

    got = losses(engine)
    assert got == losses(ref)
    assert got[-1] < got[0]


def test_parameters_overridden_on_an_instance_are_honoured(engine):
    # a Neuron or a Layer whose instance carries its own parameters(): parameters() and
    # zero_grad() of the modules around it ask it, as micrograd's (and the reference's) do
    random.seed(3)
    model = engine.nn.MLP(2, [2, 1])
    n0 = model.layers[0].neurons[0]
    n0.parameters = lambda: n0.w  # its bias left out
    assert len(model.parameters()) == 8 and n0.b not in model.parameters()
    assert len(model.layers[0].parameters()) == 5
    for p in model.parameters():
        p.grad = 1.0
    n0.b.grad = 5.0
    model.zero_grad()
    assert n0.b.grad == 5.0 and all(p.grad == 0.0 for p in model.parameters())

    other = engine.nn.MLP(2, [2, 1])
    layer = other.layers[0]
    layer.parameters = lambda: layer.neurons[0].w
    assert other.parameters() == layer.neurons[0].w + other.layers[1].parameters()
    other.layers[0].neurons[1].b.grad = 7.0
    other.zero_grad()
    assert other.layers[0].neurons[1].b.grad == 7.0


@pytest.mark.parametrize("case", ["plain", "float-weight", "subclass-neuron", "subclass-layer",
                                  "missing-bias", "one-neuron-hidden", "float-inputs",
                                  "weight-rewires-next-layer", "short-w-hidden",
                                  "long-w-hidden"])
def test_mlp_paths_give_the_reference_nodes_and_numbers(engine, ref, case):
    """MLP.__call__ runs plain hidden layers on node indices in the compiled engine; whatever
    sits in the model, the outputs, gradients and graph (nodes, edges, ops) equal the
    reference's (which calls every layer and neuron), or the same exception is raised."""
    popped = []

    def run(nn, Value):
        class Doubling(nn.Neuron):
            def __call__(self, x):
                return super().__call__(x) * 2

        random.seed(21)
        model = nn.MLP(3, [4, 5, 4, 2], act='tanh')
        if case == "float-weight":
            model.layers[1].neurons[2].w[1] = 0.25  # a number among the weights
        if case == "subclass-neuron":
            model.layers[2].neurons[1] = Doubling(5)
        if case == "subclass-layer":
            class Halving(nn.Layer):
                def __call__(self, x):
                    return [v * 0.5 for v in super().__call__(x)]
            halving = Halving(5, 4)
            halving.neurons = model.layers[2].neurons
            model.layers[2] = halving
        if case == "missing-bias":
            del model.layers[1].neurons[0].b
        if case == "short-w-hidden":  # fewer weights than inputs: pairs stop at the shorter
            popped.append(model.layers[1].neurons[0].w.pop())  # (kept alive, as a user might)
            model.layers[2].neurons[3].w = model.layers[2].neurons[3].w[:2]
        if case == "long-w-hidden":
            model.layers[1].neurons[1].w.append(Value(9.0))
        if case == "weight-rewires-next-layer":
            # a weight whose conversion (Python code, run while layer 1 is computed) puts a
            # subclass neuron into layer 2: layer 2 must be looked at again after it
            class Sneaky(float):
                def __float__(self):
                    model.layers[2].neurons[1] = Doubling(5)
                    return 0.25

            model.layers[1].neurons[2].w[1] = Sneaky(0.25)
        if case == "one-neuron-hidden":
            model = nn.MLP(3, [4, 1, 3])
        xs = [0.5, -1.0, 2.0]
        if case != "float-inputs":
            xs = [Value(x) for x in xs]
        try:
            out = model(xs)
        except (AttributeError, TypeError) as exc:
            return type(exc)
        total = sum(out, Value(0.0))
        total.backward()
        from micrograd_fast.viz import trace
        nodes, edges = trace(total)
        return ([o.data for o in out], [getattr(p, "grad", p) for p in model.parameters()],
                [x.grad for x in xs if not isinstance(x, float)], len(nodes), len(edges),
                sorted(str(v._op) for v in nodes))

    got = run(engine.nn, engine.Value)
    assert got == run(ref.nn, ref.Value)
    assert (got in (AttributeError, TypeError)) == (case in ("missing-bias", "one-neuron-hidden"))


class _Tanh(str):
    """An act spelled by a str subclass (compares equal to 'tanh')."""


# Ways a script can change a neuron between two forward passes. The compiled engine memoizes
# what it read from a neuron's dict while the dict is unchanged: every one of these must be seen.
NEURON_CHANGES = {
    "new w list": lambda n, V: setattr(n, "w", [V(0.5) for _ in n.w]),
    "w item": lambda n, V: n.w.__setitem__(1, V(-2.0)),
    "w shorter": lambda n, V: n.w.pop(),
    "new b": lambda n, V: setattr(n, "b", V(3.0)),
    "b data": lambda n, V: setattr(n.b, "data", -4.0),
    "nonlin off": lambda n, V: setattr(n, "nonlin", False),
    "nonlin 0": lambda n, V: setattr(n, "nonlin", 0),
    "act tanh": lambda n, V: setattr(n, "act", "tanh"),
    "act str subclass": lambda n, V: setattr(n, "act", _Tanh("tanh")),
    "dict item": lambda n, V: n.__dict__.__setitem__("act", "relu"),
    "dict update": lambda n, V: n.__dict__.update(b=V(-1.0), act="tanh"),
    "del act": lambda n, V: delattr(n, "act"),
    "dict pop act": lambda n, V: n.__dict__.pop("act"),
    "del and readd b": lambda n, V: (delattr(n, "b"), setattr(n, "b", V(1.5))),
    "dict replaced": lambda n, V: setattr(n, "__dict__", dict(vars(n), nonlin=False)),
    "dict cleared, refilled": lambda n, V: (lambda d: (vars(n).clear(), vars(n).update(d)))(
        dict(vars(n), act="relu")),
    "setattr builtin": lambda n, V: setattr(n, "act", "tanh"),
    "extra attribute": lambda n, V: setattr(n, "note", 1),
    "renamed w": lambda n, V: (setattr(n, "weights", n.w), delattr(n, "w")),
}


@pytest.mark.parametrize("change", NEURON_CHANGES)
@pytest.mark.parametrize("call", ["mlp", "layer"])
def test_neuron_changed_between_forwards_is_seen(engine, ref, change, call):
    """A neuron changed after a forward pass computes with its new fields in the next one, on
    both engines, exactly as the reference (which reads them by attribute access)."""
    def run(e):
        random.seed(5)
        model = e.nn.MLP(3, [4, 4, 2], act="sigmoid")
        x = [e.Value(v) for v in (0.4, -1.3, 2.2)]
        forward = model if call == "mlp" else (lambda x: model.layers[1](model.layers[0](x)))
        first = [o.data for o in forward(x)]
        try:
            NEURON_CHANGES[change](model.layers[1].neurons[2], e.Value)
            out = forward(x)
        except Exception as exc:  # (the same error on both engines)
            return first, type(exc).__name__
        loss = sum(out, e.Value(0.0))
        loss.backward()
        return first, [o.data for o in out], [o._op for o in out], [v.grad for v in x]

    got = run(engine)
    assert got == run(ref)
    assert got[1] != got[0] or change in ("extra attribute",)


def test_neuron_changed_inside_a_loop_is_seen(engine, ref):
    """Changes made in a hot loop (where CPython specializes the attribute stores) between
    forward passes are seen on every pass."""
    def run(e):
        random.seed(6)
        model = e.nn.MLP(2, [3, 3, 1], act="tanh")
        x = [e.Value(0.3), e.Value(-0.7)]
        n = model.layers[0].neurons[1]
        bs = [e.Value(k / 8) for k in range(4)]
        outs = []
        for k in range(40):
            n.act = "relu" if k % 3 else "tanh"
            n.nonlin = k % 5 != 0
            n.b = bs[k % 4]
            outs.append(model(x).data)
        return outs

    got = run(engine)
    assert got == run(ref)
    assert len(set(got)) > 4


@pytest.mark.parametrize("bad, error", [("float", AttributeError), ("tuple", TypeError)])
def test_layer_zero_grad_fails_as_micrograds(engine, bad, error):
    """A weight that is not a Value in a later neuron: zero_grad() raises micrograd's error, and
    leaves the grads as micrograd's loop does -- a float has no grad to set to 0, so what comes
    before it is zeroed; a tuple of weights cannot be added to [b] when the list is built, so
    nothing is."""
    def run(nn):
        random.seed(2)
        model = nn.MLP(2, [3, 1])
        model([1.0, 2.0]).backward()
        layer = model.layers[0]
        if bad == "float":
            layer.neurons[2].w[0] = 0.5
        else:
            layer.neurons[2].w = tuple(layer.neurons[2].w)
        with pytest.raises(error):
            layer.zero_grad()
        return [v.grad for n in layer.neurons[:2] for v in n.w + [n.b]]

    grads = run(engine.nn)
    assert grads == run(upstream_nn())
    assert not any(grads) if bad == "float" else any(grads)


def test_layer_fields_rebound_by_a_gc_callback_mid_forward(engine):
    """A garbage-collector callback (Python code that may run at any allocation) that rebinds
    the neurons' weights while Layer.__call__ runs: the old weights stay alive for the neuron
    being computed, and every output is the right number."""
    import gc

    random.seed(1)
    layer = engine.nn.Layer(3, 2)
    x = [engine.Value(v) for v in (0.5, -1.25, 2.0)]
    state = {"countdown": -1}
    junk = []

    def callback(phase, info):
        if phase != "start" or state["countdown"] < 0:
            return
        state["countdown"] -= 1
        if state["countdown"] == 0:
            state["countdown"] = -1
            fresh = [[engine.Value(1.0) for _ in range(3)] for _ in layer.neurons]
            spare = [[] for _ in range(200)]  # (fills the list freelist: the old lists are
            del spare  # really freed below, their memory reused)
            for n, w in zip(layer.neurons, fresh):
                n.w = w  # the old lists lose their last reference held by the neurons
            junk.extend((float(i), float(i), float(i)) for i in range(5000))  # reuse memory

    gc.callbacks.append(callback)
    threshold = gc.get_threshold()
    outs = []
    try:
        for k in range(1, 8):
            for n in layer.neurons:
                n.w = [engine.Value(1.0) for _ in range(3)]
            hold = None
            hold = [engine.Value(0.0) for _ in range(9000)]  # (empties the Value freelist)
            state["countdown"] = k
            gc.set_threshold(1)
            outs.append([o.data for o in layer(x)])
            gc.set_threshold(*threshold)
            junk.clear()
        del hold
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(callback)
    assert outs == [[1.25, 1.25]] * 7


def _shared_iterator_calls(nn):
    """Each way a script may hand a model an iterator instead of a list, and what comes out."""
    random.seed(2)
    mlp = nn.MLP(3, [3, 2])
    layer = nn.Layer(3, 2, nonlin=False)
    neuron = nn.Neuron(3)
    v = nn.Value
    calls = {
        "mlp-generator": lambda: mlp(x for x in [1.0, 2.0, 3.0]),
        "mlp-map-value": lambda: mlp(map(v, [1.0, 2.0, 3.0])),
        "mlp-long-iterator": lambda: mlp(iter([1.0, 2.0, 3.0, -1.0, 0.5, 2.0, 4.0])),
        "layer-iterator": lambda: layer(iter([0.5, -1.0, 2.0, 3.0])),
        "neuron-twice": lambda: [neuron(it) for it in [iter([1.0, 2.0, 3.0, 4.0])] * 2],
        "mlp-list": lambda: mlp([1.0, 2.0, 3.0]),
    }
    got = {}
    for name, call in calls.items():
        out = call()
        got[name] = [o.data for o in out] if isinstance(out, list) else out.data
    return got


def test_inputs_from_an_iterator_are_shared_as_zip_shares_them(engine, ref):
    """micrograd's neuron reads its inputs with zip(self.w, x): handed an iterator (a generator,
    map(Value, row)), each neuron takes as many items as it has weights and leaves the rest to
    the next -- so every neuron after the first sees fewer inputs. Both engines do the same, and
    upstream micrograd's nn gets the same numbers."""
    got = _shared_iterator_calls(engine.nn)
    assert got == _shared_iterator_calls(ref.nn)
    assert got["mlp-generator"] == got["mlp-map-value"] != got["mlp-list"]
    micrograd_nn = pytest.importorskip("micrograd.nn")
    assert got == _shared_iterator_calls(micrograd_nn)


class _Scalar:
    """A script's own parameter object: anything with a grad (and data)."""
    def __init__(self):
        self.data, self.grad = 1.0, 5.0


def test_zero_grad_of_a_module_with_parameters_of_its_own(engine):
    """Module.zero_grad() sets p.grad = 0 on whatever parameters() gives, as micrograd's does;
    one that takes no attribute raises micrograd's AttributeError, after those before it."""
    w = engine.Value(2.0)
    w.grad = 3.0
    s = _Scalar()

    class Model(engine.nn.Module):
        def __init__(self, params):
            self.params = params

        def parameters(self):
            return iter(self.params)

    Model([w, s]).zero_grad()
    assert (w.grad, s.grad) == (0.0, 0)
    w.grad = s.grad = 3.0
    with pytest.raises(AttributeError, match="'float' object has no attribute 'grad'"):
        Model([w, s, 0.5]).zero_grad()
    assert (w.grad, s.grad) == (0.0, 0)

    class Bare:  # no grad yet: micrograd's p.grad = 0 gives it one
        pass

    bare = Bare()
    Model([w, bare]).zero_grad()
    assert bare.grad == 0


def test_layers_hand_neurons_of_the_scripts_own_what_they_are_given(engine):
    """Layer and MLP give x to each neuron as micrograd's do: a neuron of the script's own may
    take one Value (not a list), and a layer without neurons returns [] whatever it is given."""
    nn, Value = engine.nn, engine.Value

    class ScalarNeuron(nn.Neuron):
        def __call__(self, x):
            return self.w[0] * x + self.b

    random.seed(0)
    layer = nn.Layer(1, 2)
    layer.neurons = [ScalarNeuron(1), ScalarNeuron(1)]
    assert [o.data for o in layer(Value(3.0))] == [n.w[0].data * 3.0 for n in layer.neurons]
    layer.neurons = [lambda x: x * 2, lambda x: x + 1]
    assert layer(3.0) == [6.0, 4.0]
    assert nn.Layer(2, 0)(Value(1.0)) == []
    assert nn.MLP(2, [1, 0])([1.0, 2.0]) == []
    model = nn.MLP(1, [1, 1])
    first, = model.layers[0].neurons
    model.layers[1].neurons = [last := ScalarNeuron(1)]
    y = model([3.0])
    assert y.data == last.w[0].data * max(0.0, first.w[0].data * 3.0)
    y.backward()
    assert first.w[0].grad == (last.w[0].data * 3.0 if first.w[0].data > 0 else 0.0)


@pytest.mark.parametrize("nouts, at", [([4, 3, 2], 0), ([4, 3, 2], 1), ([4, 4, 3, 2], 2)])
def test_a_layer_of_the_scripts_own_may_hand_on_an_iterator(engine, ref, nouts, at):
    """A script's layer that returns an iterator: each neuron of the next layer draws its own
    share of it, as micrograd's zip does, wherever the layer stands in the MLP."""

    class IterLayer:
        def __call__(self, x):
            return iter([xi * 2 for xi in x])

        def parameters(self):
            return []

    def run(nn):
        random.seed(5)
        model = nn.MLP(4, list(nouts))
        model.layers.insert(at, IterLayer())
        return [v.data for v in model([1.0, -2.0, 3.0, 0.5])]

    got = run(engine.nn)
    assert got == run(ref.nn) == run(upstream_nn())


def test_a_layer_never_iterates_what_its_neurons_do_not(engine):
    """x whose __iter__ raises: micrograd's Layer hands it to each neuron as it is, so neurons
    that do not iterate it (or no neurons at all) never raise."""

    class Weird:
        def __iter__(self):
            raise ValueError("not iterable today")

    layer = engine.nn.Layer(2, 0)
    assert layer(Weird()) == []
    layer.neurons = [lambda x: 42, lambda x: 43]
    assert layer(Weird()) == [42, 43]
    with pytest.raises(ValueError, match="not iterable today"):
        engine.nn.Layer(2, 2)(Weird())
