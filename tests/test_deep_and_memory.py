"""Deep graphs and memory: a million-node chain back-propagates without recursion and is freed when
dropped; a training loop's graphs are recycled without growing the arena; nodes that stay alive
through many arena compactions keep their numbers, labels, children and backward."""
import gc
import math
import random
import weakref

import pytest

from micrograd_fast import demo

K = 1.0000001


def chain_steps(engine):
    # 4 nodes a step (a constant and a '*', a constant and a '+'): 1,000,000 nodes on the compiled
    # engine, 100,000 on the reference (whose Python objects make a million take seconds)
    return 250_000 if engine.name == "c" else 25_000


def live(engine):
    """Live nodes in the compiled arena (None on the reference engine)."""
    return engine.arena_stats()['live'] if engine.arena_stats else None


@pytest.fixture
def quiet_gc():
    """Start from a collected heap, so that leftovers of earlier tests do not count."""
    while gc.collect():  # garbage of earlier tests may need several passes
        pass
    yield


@pytest.mark.slow
def test_million_node_chain(engine, quiet_gc):
    Value = engine.Value
    steps = chain_steps(engine)
    baseline = live(engine)
    leaf = Value(1.0)
    x = leaf
    for _ in range(steps):
        x = x * K + 0.0
    if baseline is not None:
        assert live(engine) == baseline + 4 * steps + 1
    x.backward()  # no RecursionError, no crash

    # closed form: d/dleaf of leaf * K**n is K**n; the backward multiplies the same K's in the
    # same order as the forward did, starting from 1.0 -- so the grad equals the data exactly
    assert leaf.grad == x.data
    assert leaf.grad == pytest.approx(K ** steps, rel=1e-9)
    assert x.grad == 1.0

    # dropping the root frees the chain; the leaf lives on
    root = weakref.ref(x)
    del x
    assert root() is None
    if baseline is not None:
        assert live(engine) == baseline + 1
    assert (leaf.data, leaf.grad) == (1.0, pytest.approx(K ** steps, rel=1e-9))
    r_leaf = weakref.ref(leaf)
    del leaf
    assert r_leaf() is None
    if baseline is not None:
        assert live(engine) == baseline


@pytest.mark.slow
def test_million_node_sum_chain_reusing_one_leaf(engine, quiet_gc):
    # x = x + a, a million times: one '+' node per step, every one uses the same leaf a
    Value = engine.Value
    n = 1_000_000 if engine.name == "c" else 100_000
    baseline = live(engine)
    a = Value(1.0)
    x = Value(0.0)
    for _ in range(n):
        x = x + a
    assert x.data == float(n)
    x.backward()
    assert a.grad == float(n)
    x.backward()  # again: a's grad accumulates, the chain's grads too
    assert a.grad == float(n) + n * (n + 1) / 2  # second pass: node j carries grad (n - j) + 1
    if baseline is not None:
        assert live(engine) == baseline + n + 2
    del x
    if baseline is not None:
        assert live(engine) == baseline + 1
    del a
    if baseline is not None:
        assert live(engine) == baseline


@pytest.mark.slow
def test_deep_chain_of_custom_backward_nodes(engine, quiet_gc):
    # 100,000 hand-built nodes, each with a Python _backward: the order and the release stay
    # iterative, and the closures' reference cycles are collected in one gc pass
    Value = engine.Value
    n = 100_000
    baseline = live(engine)
    closures = []  # weak: to break the cycles by hand if the engine fails to, so no later test sees a leak
    leaf = Value(2.0)
    x = leaf
    try:
        for _ in range(n):
            out = Value(x.data + 1.0, (x,), 'inc')

            def _backward(x=x, out=out):
                x.grad += out.grad
            out._backward = _backward
            closures.append(weakref.ref(_backward))
            x = out
        del out, _backward
        assert x.data == 2.0 + n
        x.backward()
        assert leaf.grad == 1.0
        r = weakref.ref(x)
        del x
        gc.collect()
        assert r() is None
        assert all(f() is None for f in closures)
        if baseline is not None:
            assert live(engine) == baseline + 1
        del leaf
        if baseline is not None:
            assert live(engine) == baseline
    finally:
        fn = None
        for f in closures:
            fn = f()
            if fn is not None:
                fn.__defaults__ = None
        del fn
        gc.collect()


def test_deep_tanh_chain_matches_reference(engine, ref):
    # 50,000 unary nodes deep, with a closed form checked on the reference: bitwise equal
    def run(Value):
        leaf = Value(0.5)
        x = leaf
        for _ in range(50_000):
            x = x.tanh()
        x.backward()
        return x.data, leaf.grad

    assert run(engine.Value) == run(ref.Value)


# ---- memory: a training loop's graphs are recycled ---------------------------------------------

def test_training_loop_memory_is_flat(c_engine, quiet_gc):
    """1,000 steps of the demo (MLP(2, [16, 16, 1]) on 100 moons, ~8,000 nodes a step): the arena
    never grows beyond what the first step needed, and all nodes but the parameters are freed."""
    Value, nn, stats = c_engine.Value, c_engine.nn, c_engine.arena_stats
    X, y = demo.make_moons(n_samples=100, noise=0.1, seed=7)
    baseline = stats()['live']
    cap_before = stats()['capacity']  # an emptied arena keeps its capacity (up to 2**20 slots)
    random.seed(7)
    model = nn.MLP(2, [16, 16, 1])
    n_params = len(model.parameters())
    assert stats()['live'] == baseline + n_params
    compactions = stats()['compactions']

    peaks, capacities, after, edges, tops = [], [], [], [], []
    for k in range(1000):
        loss, _ = demo.svm_loss(model, X, y, Value)
        model.zero_grad()
        loss.backward()
        s = stats()
        peaks.append(s['live'])
        capacities.append(s['capacity'])
        for p in model.parameters():
            p.data -= (1.0 - 0.9 * k / 1000) * p.grad
        del loss, p
        s = stats()
        capacities.append(s['capacity'])
        after.append(s['live'])
        edges.append((s['edges'], s['edge_capacity']))
        tops.append(s['high_water'])

    # every step builds the same graph, and drops all of it but the parameters
    assert set(peaks) == {peaks[0]}
    assert peaks[0] > 5000
    assert set(after) == {baseline + n_params}
    # the arena's size is settled by the first step: no growth afterwards ...
    assert set(capacities) == {capacities[0]}
    # ... and stays within a small multiple of one step's graph (or what the arena had already)
    assert capacities[0] <= max(cap_before, 4096, 4 * peaks[0])
    # dead slots were reclaimed, not left behind: each step's graph dies from its loss down, so
    # the arena shrinks back to the parameters and the next step reuses the same slots (and the
    # same edges) -- no compaction needed
    assert set(tops) == {tops[0]}
    assert stats()['compactions'] <= compactions + 2
    # the neurons' children (an edge block per dot node) go with their nodes, and the edge
    # arena does not grow after the first step either
    assert {e for e, _ in edges} == {edges[0][0]}
    assert {c for _, c in edges} == {edges[0][1]}
    del model
    assert stats()['live'] == baseline


def test_train_step_loop_memory(c_engine, quiet_gc):
    # the same through demo.train_step, as the benchmarks and the demo use it
    Value, nn, stats = c_engine.Value, c_engine.nn, c_engine.arena_stats
    X, y = demo.make_moons(n_samples=40, noise=0.1, seed=3)
    baseline = stats()['live']
    random.seed(3)
    model = nn.MLP(2, [8, 8, 1])
    demo.train_step(model, X, y, Value, 0, 300)
    capacity = stats()['capacity']
    for k in range(1, 300):
        demo.train_step(model, X, y, Value, k, 300)
        assert stats()['capacity'] == capacity
        assert stats()['live'] == baseline + len(model.parameters())
    del model
    assert stats()['live'] == baseline


# ---- survivors of compaction -------------------------------------------------------------------

def test_kept_nodes_survive_many_compactions(engine, quiet_gc):
    """Keep some leaves, inner nodes, labelled and hand-built nodes alive while lots of graphs are
    made and dropped around them (the compiled arena compacts when half its slots are dead, moving
    the survivors): they keep their data, grad, label, _op, children and backward."""
    Value = engine.Value
    rng = random.Random(11)
    leaves, inner, custom = {}, {}, {}
    compactions = engine.arena_stats()['compactions'] if engine.arena_stats else None

    tails = []

    def churn(n_nodes):
        x = Value(rng.random())
        for _ in range(n_nodes // 2):
            x = x * 1.0
        x.backward()
        # a younger node outlives the chain, so the chain's slots become holes below it (a graph
        # that dies from the top down just gives its slots back: nothing to compact)
        tails.append(Value(0.0))
        del tails[:-1]

    for i in range(300):
        # a new survivor of each kind, between dropped graphs
        leaf = Value(i * 0.5, label=f'leaf{i}')
        leaf.grad = -float(i)
        leaves[i] = leaf
        if i >= 1:
            node = leaves[i] * 3.0 + leaves[i - 1]  # keeps a '*' node (no facade) and a constant
            node.label = f'inner{i}'
            inner[i] = node
        if i % 10 == 5:
            a = leaves[i]
            out = Value(a.data ** 2, (a,), f'sq{i}')

            def _backward(a=a, out=out):
                a.grad += 2 * a.data * out.grad
            out._backward = _backward
            custom[i] = out
        churn(rng.randrange(100, 3000))
        # drop some survivors again, so holes open up between the ones that stay
        if i % 7 == 3:
            victim = rng.randrange(i)
            leaves.pop(victim, None)  # inner nodes still hold their leaves' nodes
            inner.pop(rng.randrange(1, i + 1), None)
    # more churn, until the arena has compacted often enough (bounded: a handful of rounds
    # suffice when the arena starts small, as it does when no earlier test leaked)
    for _ in range(200):
        if compactions is None or engine.arena_stats()['compactions'] >= compactions + 20:
            break
        churn(6000)
    gc.collect()
    if compactions is not None:
        assert engine.arena_stats()['compactions'] >= compactions + 20

    for i, leaf in leaves.items():
        assert (leaf.data, leaf.grad, leaf.label, leaf._op, leaf._prev) == (
            i * 0.5, -float(i), f'leaf{i}', '', set())
    for i, node in inner.items():
        assert node.data == i * 0.5 * 3.0 + (i - 1) * 0.5
        assert (node.label, node._op, node.grad) == (f'inner{i}', '+', 0.0)
        (mul,) = [c for c in node._prev if c._op == '*']
        (prev_leaf,) = [c for c in node._prev if c._op == '']
        assert prev_leaf.data == (i - 1) * 0.5 and prev_leaf.label == f'leaf{i - 1}'
        if i - 1 in leaves:
            assert prev_leaf is leaves[i - 1]  # the kept facade, not a new one
        assert {c.data for c in mul._prev} == {i * 0.5, 3.0}
    for i, out in custom.items():
        assert (out._op, out.data) == (f'sq{i}', (i * 0.5) ** 2)
        (a,) = out._prev
        assert a.label == f'leaf{i}'

    # backward through the survivors still reaches the right children
    for i, node in list(inner.items())[:40]:
        mul = [c for c in node._prev if c._op == '*'][0]
        (a,) = [c for c in mul._prev if c.label == f'leaf{i}']
        b = [c for c in node._prev if c._op == ''][0]
        ga, gb = a.grad, b.grad
        node.backward()
        assert (a.grad, b.grad) == (ga + 3.0, gb + 1.0)
    for i, out in custom.items():
        (a,) = out._prev
        g = a.grad
        out.backward()
        assert a.grad == g + 2 * a.data


def test_kept_nary_and_python_nodes_survive_many_compactions(engine, quiet_gc):
    """Nodes whose children sit in the compiled engine's edge arena -- neurons' dot nodes,
    softmax outputs, hand-built nodes, and '*' nodes turned into Python-backward nodes long after
    they were made (their block then sits above younger ones') -- keep their children, numbers
    and gradients while many graphs around them die and the arena compacts."""
    Value, F = engine.Value, engine.module
    rng = random.Random(5)
    kept = []  # (kind, root, leaves, expected grads of the leaves after root.backward())

    def churn():
        x = Value(rng.random())
        ws = [Value(rng.random()) for _ in range(8)]
        for _ in range(rng.randrange(50, 400)):
            x = F.dot(ws, [x] * 8, Value(0.0)).tanh()
        x.backward()

    for i in range(120):
        kind = i % 4
        if kind == 0:  # a neuron
            ws = [Value(rng.uniform(-1, 1)) for _ in range(5)]
            xs = [Value(rng.uniform(-1, 1)) for _ in range(5)]
            b = Value(0.25)
            root = F.dot(ws, xs, b)
            kept.append((root, ws + xs + [b], [x.data for x in xs] + [w.data for w in ws] + [1.0]))
        elif kind == 1:  # one softmax output over three logits
            zs = [Value(rng.uniform(-2, 2)) for _ in range(3)]
            root = F.softmax(zs)[1]
            e = [math.exp(z.data) for z in zs]
            p = [v / sum(e) for v in e]
            kept.append((root, zs, [p[1] * ((k == 1) - p[k]) for k in range(3)]))
        elif kind == 2:  # hand-built, lecture style
            a, b = Value(rng.uniform(1, 2)), Value(rng.uniform(1, 2))
            root = Value(a.data * b.data, (a, b), 'mul')

            def _backward(a=a, b=b, root=root):
                a.grad += b.data * root.grad
                b.grad += a.data * root.grad
            root._backward = _backward
            kept.append((root, [a, b], [b.data, a.data]))
        else:  # an old '*' node given a Python backward now, above younger nodes' blocks
            a, b = kept[-3][1][0], kept[-3][1][1]
            root = a * b
            churn()
            root._backward = lambda a=a, b=b, root=root: (
                setattr(a, 'grad', a.grad + 3 * root.grad), setattr(b, 'grad', b.grad + 5 * root.grad))
            kept.append((root, [a, b], [3.0, 5.0] if a is not b else [8.0, 8.0]))
        churn()
    for root, leaves, expected in kept:
        for v in leaves:
            v.grad = 0.0
        root.backward()
        assert [v.grad for v in leaves] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert set(leaves) <= root._prev or root._op == 'softmax'
    if engine.arena_stats:
        assert engine.arena_stats()['compactions'] > 0


def test_big_dead_graph_is_compacted_away_while_others_live(c_engine):
    """A big graph dies while a small one stays: the next operation compacts the arena, so later
    backward() passes do not wade through the dead slots (no fallback to the sort), and the
    numbers stay right."""
    Value = c_engine.Value
    x = Value(0.5)
    for _ in range(200_000):
        x = x + 1.0
    x.backward()
    keep = Value(1.5)  # above the big graph: its slots become holes below a live node
    del x
    before = c_engine.arena_stats()
    assert before["dead_slots"] >= 200_000
    for _ in range(50):
        keep.grad = 0.0
        (keep * 2 + 1).tanh().backward()
    after = c_engine.arena_stats()
    assert after["compactions"] > before["compactions"]
    assert after["high_water"] < 10_000
    assert after["topo_fallbacks"] == before["topo_fallbacks"]
    assert keep.grad == 2 * (1 - math.tanh(4.0) ** 2)


def test_an_emptied_arena_keeps_a_moderate_capacity_and_returns_a_big_one(c_engine):
    """When its last node goes, the arena keeps up to 2**20 slots for the next graph and gives a
    bigger one's memory back (checked only when no other test's nodes are alive)."""
    Value, stats = c_engine.Value, c_engine.arena_stats
    if stats()['live']:
        pytest.skip("other nodes are alive: the arena cannot empty")
    x = Value(1.0)
    for _ in range(200_000):
        x = x * 1.0
    del x
    assert stats()['live'] == 0 and 2 ** 18 <= stats()['capacity'] <= 2 ** 20
    x = Value(1.0)
    for _ in range(1_500_000):
        x = x + 1.0
    assert stats()['capacity'] > 2 ** 20
    del x
    assert stats()['live'] == 0 and stats()['capacity'] == 4096


def test_freeing_a_small_graph_atop_a_big_arena_needs_little_memory(c_engine):
    """Freeing nodes keeps a list of the ones dying, sized by how many do: a 3-node graph on top
    of a million live nodes must not ask for room for all of them (a request that could fail
    inside a deallocator, where the nodes would have been lost)."""
    import tracemalloc
    Value = c_engine.Value
    keep = [Value(1.0) for _ in range(1_000_000)]
    a = Value(2.0)
    for _ in range(3):  # (and again, once anything earlier has been given back)
        y = (a * 3.0).tanh()
        tracemalloc.start()
        try:
            del y
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024
    assert c_engine.arena_stats()['live'] >= len(keep) + 1
    assert keep[-1].data == 1.0 and a.grad == 0.0
