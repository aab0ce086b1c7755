"""micrograd_fast.optim: SGD, Adam, AdamW with torch.optim's update rules, on both engines.

The two engines agree bit for bit (same operation order); plain SGD is the notebook's loop bit
for bit; against torch.optim (float64, the same gradients fed in) parameters agree to 1e-12
relative after 100 steps of the demo problem."""
import math
import random

import pytest

from micrograd_fast import demo, optim

CONFIGS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1),
    "sgd-momentum": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.1,
                                         weight_decay=1e-3),
    "sgd-nesterov": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True),
    "adam": lambda ps: optim.Adam(ps, lr=0.01),
    "adam-l2": lambda ps: optim.Adam(ps, lr=0.02, betas=(0.5, 0.99), eps=1e-6, weight_decay=1e-2),
    "adam-w1-large": lambda ps: optim.Adam(ps, lr=0.01, betas=(0.3, 0.9)),  # lerp's other formula
    "adamw": lambda ps: optim.AdamW(ps, lr=0.01),
}


def torch_optimizer(torch, name, params):
    o = torch.optim
    return {
        "sgd": lambda: o.SGD(params, lr=0.1, foreach=False),
        "sgd-momentum": lambda: o.SGD(params, lr=0.05, momentum=0.9, dampening=0.1,
                                      weight_decay=1e-3, foreach=False),
        "sgd-nesterov": lambda: o.SGD(params, lr=0.05, momentum=0.8, nesterov=True, foreach=False),
        "adam": lambda: o.Adam(params, lr=0.01, foreach=False),
        "adam-l2": lambda: o.Adam(params, lr=0.02, betas=(0.5, 0.99), eps=1e-6, weight_decay=1e-2,
                                  foreach=False),
        "adam-w1-large": lambda: o.Adam(params, lr=0.01, betas=(0.3, 0.9), foreach=False),
        "adamw": lambda: o.AdamW(params, lr=0.01, foreach=False),
    }[name]()


def problem(engine, sizes=(16, 16, 1), n=100, seed=1337):
    X, y = demo.make_moons(n_samples=n, seed=seed)
    random.seed(seed)
    model = engine.nn.MLP(2, list(sizes))
    return model, X, y


def train(engine, make_opt, steps, sizes=(4, 4, 1), n=20, schedule=False):
    model, X, y = problem(engine, sizes, n)
    opt = make_opt(model.parameters())
    trace = []
    for k in range(steps):
        loss, _ = demo.svm_loss(model, X, y, engine.Value)
        opt.zero_grad()
        loss.backward()
        if schedule:
            opt.lr = demo.learning_rate(k, steps)
        opt.step()
        trace.append([p.data for p in model.parameters()])
    return trace


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_engines_agree_bit_for_bit(c_engine, ref, name):
    assert train(c_engine, CONFIGS[name], 12) == train(ref, CONFIGS[name], 12)


def test_adam_without_epsilon_divides_as_torch(engine):
    """eps=0 and a zero gradient: Adam's 0 / 0 is nan, as in torch (C's division), on both
    engines -- not a ZeroDivisionError on one of them."""
    a, b = engine.Value(1.0), engine.Value(2.0)
    opt = optim.Adam([a, b], lr=0.1, eps=0.0)
    b.grad = 0.5
    opt.step()
    assert math.isnan(a.data) and b.data == 2.0 - 0.1


def test_sgd_is_the_notebooks_loop(engine):
    steps = 8
    model, X, y = problem(engine, (4, 4, 1), 20)
    expected = [demo.train_step(model, X, y, engine.Value, k, steps) for k in range(steps)]
    model, X, y = problem(engine, (4, 4, 1), 20)
    opt = optim.SGD(model.parameters(), lr=1.0)
    got = []
    for k in range(steps):
        opt.lr = demo.learning_rate(k, steps)
        got.append(demo.train_step(model, X, y, engine.Value, k, steps, opt))
    assert got == expected


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_torch(c_engine, name):
    torch = pytest.importorskip("torch")
    model, X, y = problem(c_engine)
    params = model.parameters()
    theirs = torch.tensor([p.data for p in params], dtype=torch.float64, requires_grad=True)
    topt = torch_optimizer(torch, name, [theirs])
    opt = CONFIGS[name](params)
    for _ in range(100):
        loss, _ = demo.svm_loss(model, X, y, c_engine.Value)
        opt.zero_grad()
        loss.backward()
        theirs.grad = torch.tensor([p.grad for p in params], dtype=torch.float64)
        opt.step()
        topt.step()
        for ours, t in zip(params, theirs.detach().tolist()):
            # (abs_tol: parameters that pass close to 0 differ by a few ulps of their path)
            assert math.isclose(ours.data, t, rel_tol=1e-12, abs_tol=1e-15), (ours.data, t)


@pytest.mark.parametrize("name", ["sgd-momentum", "adam", "adamw"])
def test_state_dict_round_trip(engine, name):
    make = CONFIGS[name]
    straight = train(engine, make, 10)[-1]
    model, X, y = problem(engine, (4, 4, 1), 20)
    opt = make(model.parameters())

    def step(opt, model):
        loss, _ = demo.svm_loss(model, X, y, engine.Value)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(6):
        step(opt, model)
    saved = opt.state_dict()
    data = [p.data for p in model.parameters()]
    assert saved["state"]["step"] == 6
    assert saved["param_groups"][0]["params"] == list(range(len(data)))
    # a fresh model and optimizer, continued from the saved state
    model2, _, _ = problem(engine, (4, 4, 1), 20)
    engine.module.assign(model2.parameters(), data)
    opt2 = make(model2.parameters())
    opt2.load_state_dict(saved)
    assert opt2.state_dict() == saved
    for _ in range(4):
        step(opt2, model2)
    assert [p.data for p in model2.parameters()] == straight


def test_sgd_state_before_momentum(engine):
    ps = [engine.Value(1.0), engine.Value(2.0)]
    opt = optim.SGD(ps, lr=0.1, momentum=0.9)
    sd = opt.state_dict()
    assert sd["state"] == {"step": 0, "momentum_buffer": None}
    assert sd["param_groups"][0]["lr"] == 0.1
    for p in ps:
        p.grad = 1.0
    opt.step()
    assert opt.state_dict()["state"]["momentum_buffer"] == [1.0, 1.0]
    assert [p.data for p in ps] == [1.0 - 0.1, 2.0 - 0.1]
    opt.step()  # b = 0.9 * 1 + 1
    assert [p.data for p in ps] == [1.0 - 0.1 - 0.1 * 1.9, 2.0 - 0.1 - 0.1 * 1.9]


def test_load_state_dict_checks(engine):
    ps = [engine.Value(1.0), engine.Value(2.0)]
    opt = optim.Adam(ps)
    sd = opt.state_dict()
    other = optim.Adam([engine.Value(0.0)])
    with pytest.raises(ValueError):
        other.load_state_dict(sd)
    with pytest.raises(ValueError):
        optim.SGD(ps, lr=0.1).load_state_dict(sd)
    bad = opt.state_dict()
    bad["state"]["exp_avg"] = [0.0]
    with pytest.raises(ValueError):
        opt.load_state_dict(bad)


def test_lr_and_param_groups(engine):
    ps = [engine.Value(1.0)]
    opt = optim.SGD(ps, lr=0.5)
    assert opt.lr == 0.5 and opt.param_groups[0]["lr"] == 0.5
    opt.lr = 0.25
    assert opt.param_groups[0]["lr"] == 0.25
    opt.param_groups[0]["lr"] = 0.125  # torch's way
    ps[0].grad = 1.0
    opt.step()
    assert ps[0].data == 1.0 - 0.125
    assert opt.param_groups[0]["params"] == ps
    with pytest.raises(ValueError):
        opt.lr = -1.0
    opt.zero_grad()
    assert ps[0].grad == 0.0


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=-0.1),
    lambda ps: optim.SGD(ps, lr=0.1, momentum=-0.5),
    lambda ps: optim.SGD(ps, lr=0.1, weight_decay=-1),
    lambda ps: optim.SGD(ps, lr=0.1, nesterov=True),
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
    lambda ps: optim.Adam(ps, lr=-1),
    lambda ps: optim.Adam(ps, betas=(1.0, 0.9)),
    lambda ps: optim.Adam(ps, betas=(0.9, -0.1)),
    lambda ps: optim.Adam(ps, eps=-1e-8),
    lambda ps: optim.Adam(ps, weight_decay=-0.1),
    lambda ps: optim.AdamW(ps, lr=float("nan")),
])
def test_bad_hyper_parameters(engine, make):
    with pytest.raises(ValueError):
        make([engine.Value(1.0)])


def test_bad_parameter_lists(engine, ref, c_engine):
    for cls in (optim.SGD, optim.Adam, optim.AdamW):
        with pytest.raises(ValueError):
            cls([], lr=0.1)
        with pytest.raises(TypeError):
            cls([engine.Value(1.0), 2.0], lr=0.1)
        with pytest.raises(TypeError):
            cls([c_engine.Value(1.0), ref.Value(2.0)], lr=0.1)


def test_parameters_moved_by_compaction(c_engine):
    # the compiled optimizer reads each parameter's node index at every step
    ps = [c_engine.Value(float(i)) for i in range(3)]
    junk = [c_engine.Value(0.0) for _ in range(50_000)]
    keep = [c_engine.Value(5.0) for _ in range(3)]
    opt = optim.SGD(keep, lr=0.5)
    before = c_engine.arena_stats()["compactions"]
    del junk
    c_engine.Value(1.0) * 2  # compacts: keep's nodes move down
    for p in keep:
        p.grad = 2.0
    opt.step()
    assert c_engine.arena_stats()["compactions"] > before
    assert [p.data for p in keep] == [4.0] * 3
    assert [p.data for p in ps] == [0.0, 1.0, 2.0]


def _quadratic_steps(engine, opt, params, steps):
    """steps of minimising sum((p - k)^2): each step's data after the update."""
    out = []
    for _ in range(steps):
        loss = engine.sum_values([(p - k) ** 2 for k, p in enumerate(params)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append([p.data for p in params])
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_copy_and_pickle_continue_the_same_run(engine, name):
    import copy
    import pickle
    params = [engine.Value(x) for x in (0.5, -1.0, 2.0)]
    opt = CONFIGS[name](params)
    _quadratic_steps(engine, opt, params, 3)
    deep = copy.deepcopy(opt)
    pickled = pickle.loads(pickle.dumps(opt))
    for clone in (deep, pickled):
        theirs = list(clone.param_groups[0]["params"])
        assert [p.data for p in theirs] == [p.data for p in params] and theirs[0] is not params[0]
        assert clone.state_dict() == opt.state_dict()
    # stepped alike from here, the copies and the original stay equal bit for bit
    ours = _quadratic_steps(engine, opt, params, 4)
    for clone in (deep, pickled):
        assert _quadratic_steps(engine, clone, list(clone.param_groups[0]["params"]), 4) == ours


def test_parameters_are_fixed_at_construction(engine):
    a, b = engine.Value(1.0), engine.Value(2.0)
    opt = optim.SGD([a], lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["params"] == [a]
    with pytest.raises(TypeError, match="fixed when it is made"):
        opt.param_groups[0]["params"].append(b)
    with pytest.raises(TypeError):
        opt.param_groups[0]["params"][0] = b
    opt.param_groups[0]["params"] = [a, b]
    with pytest.raises(RuntimeError, match="was replaced"):
        opt.step()
    with pytest.raises(RuntimeError, match="was replaced"):
        opt.zero_grad()


def test_non_leaf_and_duplicate_parameters(engine):
    a = engine.Value(1.0)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([a, a * 2], lr=0.1)
    with pytest.warns(UserWarning, match="more than once"):
        optim.Adam([a, a])
    with pytest.raises(TypeError):
        optim.SGD([a], lr="0.1")
    opt = optim.SGD([a], lr=0.1)
    with pytest.raises(TypeError):
        opt.lr = "0.5"


def test_a_bad_state_dict_changes_nothing(engine):
    params = [engine.Value(x) for x in (0.5, -1.0)]
    opt = optim.Adam(params, lr=0.1)
    _quadratic_steps(engine, opt, params, 2)
    before = opt.state_dict()
    for bad in ({"exp_avg_sq": ["x", 1.0]}, {"step": "abc"}):
        sd = opt.state_dict()
        sd["state"].update(bad)
        with pytest.raises(ValueError):
            opt.load_state_dict(sd)
        assert opt.state_dict() == before


@pytest.mark.parametrize("value", ["float32", "float16", "int", "fraction", "decimal", "str"])
@pytest.mark.parametrize("key", ["lr", "momentum", "weight_decay", "eps", "betas"])
@pytest.mark.parametrize("name", ["sgd-momentum", "adam-l2", "adamw"])
def test_settings_written_into_param_groups(c_engine, ref, name, key, value):
    """A schedule that writes param_groups[0][key] directly, as torch code does, with a value
    that is not a plain float: both engines step with the same floats (the value checked and
    converted as the constructor would), or raise the same error."""
    import fractions
    from decimal import Decimal

    np = pytest.importorskip("numpy")
    make = {"float32": np.float32, "float16": np.float16, "int": lambda x: int(x * 10) or 1,
            "fraction": fractions.Fraction, "decimal": lambda x: Decimal(repr(x)),
            "str": repr}[value]

    def run(engine):
        model, X, y = problem(engine, (3, 1), 10)
        opt = CONFIGS[name](model.parameters())
        group = opt.param_groups[0]
        if key not in group:
            return None
        trace = []
        try:
            for k in range(3):
                loss, _ = demo.svm_loss(model, X, y, engine.Value)
                opt.zero_grad()
                loss.backward()
                group[key] = (tuple(make(b) for b in (0.5, 0.9)) if key == "betas"
                              else make(0.05 / (k + 1)))
                opt.step()
                trace.append([p.data for p in model.parameters()])
        except (TypeError, ValueError) as exc:
            trace.append(type(exc).__name__)
        return trace

    got = run(c_engine)
    assert got == run(ref)
    if got is not None and value in ("decimal", "str"):
        assert got[-1] == "TypeError"
