"""The classification nodes inside the training tools: recompute() replays them bit for bit,
and under no_grad() they are plain leaves with the same numbers."""
import random

import pytest

OPS = ["softmax", "log_softmax", "logsumexp", "cross_entropy"]


def _graph(m, xs, target):
    parts = [m.cross_entropy(xs, target), m.logsumexp(xs)]
    parts += m.softmax(xs) + m.log_softmax(xs)
    total = parts[0]
    for p in parts[1:]:
        total = total + p * 0.5
    return total


@pytest.mark.parametrize("seed", range(5))
def test_recompute_equals_rebuild(engine, seed):
    m, V = engine.module, engine.Value
    rng = random.Random(seed)
    n = rng.randint(1, 6)
    xs = [V(rng.uniform(-5, 5)) for _ in range(n)]
    target = rng.randrange(n)
    loss = _graph(m, xs, target)
    for step in range(3):
        new = [rng.uniform(-800, 800) if step == 2 else rng.uniform(-5, 5) for _ in range(n)]
        m.assign(xs, new)
        got = loss.recompute()
        fresh_xs = [V(x) for x in new]
        fresh = _graph(m, fresh_xs, target)
        assert got == fresh.data and loss.data == fresh.data
        loss.zero_grad()
        loss.backward()
        fresh.backward()
        # the same graph with the same numbers: the same gradients, bit for bit
        assert [x.grad for x in xs] == [x.grad for x in fresh_xs]


@pytest.mark.parametrize("op", OPS)
def test_no_grad_gives_leaves_with_the_same_numbers(engine, op):
    m, V = engine.module, engine.Value
    xs = [V(1.5), V(-0.25), V(3.0)]
    args = (xs, 1) if op == "cross_entropy" else (xs,)
    with_graph = getattr(m, op)(*args)
    before = engine.arena_stats()["live"] if engine.arena_stats else None
    with m.no_grad():
        plain = getattr(m, op)(*args)
        plain_numbers = getattr(m, op)([1.5, -0.25, 3.0], *args[1:])
    outs = plain if isinstance(plain, list) else [plain]
    graph_outs = with_graph if isinstance(with_graph, list) else [with_graph]
    numbers = plain_numbers if isinstance(plain_numbers, list) else [plain_numbers]
    assert [v.data for v in outs] == [v.data for v in graph_outs] == [v.data for v in numbers]
    assert all(v._prev == set() and v._op == "" for v in outs + numbers)
    if before is not None:  # only the leaves handed back are new: the number leaves are gone
        assert engine.arena_stats()["live"] == before + len(outs) + len(numbers)
