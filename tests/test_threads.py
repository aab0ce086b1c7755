"""Threads. The compiled engine runs with the GIL held, so each engine call -- an operator, a
fused dot/sum_values, a whole backward() sweep without Python callbacks -- happens at once as far
as other Python threads can tell. What that gives (see the README, "Reliability"):

* graphs built and back-propagated by several threads at once give exactly the single-threaded
  numbers, on both engines, Python `_backward` callbacks included (they may let other threads run
  in the middle of a sweep: the sweep's order and buffers are its own, and the arena does not move
  nodes while any sweep is paused);
* threads may share read-only Values (parameters) as children of their own graphs;
* backward() from several threads over graphs that share nodes adds every contribution to the
  shared .grad (as torch does), in an unspecified order. In the compiled engine a sweep cannot be
  interrupted, so no update is lost. In the reference engine (and micrograd) backward() is Python
  code and `a.grad += ...` is not atomic: shared grads may lose updates -- use a lock there.

Each test shrinks the interpreter's switch interval to a microsecond, forcing threads to interleave
between almost every pair of bytecodes.
"""
import random
import sys
import threading

import pytest

THREADS = 6


@pytest.fixture(autouse=True)
def tiny_switch_interval():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def run_threads(target, n=THREADS):
    """target(k) in n threads started together; their results (and errors) in thread order."""
    barrier = threading.Barrier(n)
    results = [None] * n
    errors = []

    def body(k):
        try:
            barrier.wait()
            results[k] = target(k)
        except BaseException as e:  # reported by the test, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=body, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def random_graph(engine, seed, size=300):
    """A random expression graph with reuse, backward() from its root, twice: every Value's data
    and grad, as a list of numbers."""
    rng = random.Random(seed)
    V = engine.Value
    xs = [V(rng.uniform(-1, 1)) for _ in range(5)]
    nodes = list(xs)
    for _ in range(size):
        a, b = rng.choice(nodes), rng.choice(nodes)
        op = rng.randrange(8)
        if op == 0:
            v = a + b
        elif op == 1:
            v = a * b
        elif op == 2:
            v = a - b
        elif op == 3:
            v = (a * a + 1) ** -1  # never a division by zero
        elif op == 4:
            v = a.tanh()
        elif op == 5:
            v = a.relu() + b.sigmoid()
        elif op == 6:
            v = engine.dot(nodes[-3:], nodes[:3], b)
        else:
            v = engine.sum_values(nodes[-4:], a)
        nodes.append(v)
    root = engine.sum_values(nodes[-20:])
    root.backward()
    root.backward()  # grads accumulate across calls
    return [(v.data, v.grad) for v in nodes] + [(root.data, root.grad)]


def test_independent_graphs_in_threads(engine):
    """Several threads each build and back-propagate their own graphs: the same numbers as one
    thread, bit for bit."""
    def work(k):
        return [random_graph(engine, seed=100 * k + j) for j in range(3)]

    alone = [work(k) for k in range(THREADS)]
    assert run_threads(work) == alone


def graph_with_callbacks(engine, seed):
    """A lecture-style graph of hand-built nodes whose _backward are Python functions; the
    callbacks also build (and drop) many nodes while the sweep runs, so the arena grows and other
    threads run in the middle of the sweep."""
    rng = random.Random(seed)
    V = engine.Value
    xs = [V(rng.uniform(-2, 2)) for _ in range(4)]
    nodes = list(xs)
    for i in range(60):
        a, b = rng.choice(nodes), rng.choice(nodes)
        out = V(a.data * b.data, (a, b), "*")

        def _backward(out=out, a=a, b=b, i=i):
            scratch = [V(float(j)) * 2 for j in range(50 if i % 10 else 3000)]
            a.grad += b.data * out.grad + 0 * scratch[-1].data
            b.grad += a.data * out.grad

        out._backward = _backward
        nodes.append(out.tanh())
    root = engine.sum_values(nodes[-10:])
    root.backward()
    return [(v.data, v.grad) for v in nodes]


def test_python_backward_callbacks_in_threads(engine):
    def work(k):
        return [graph_with_callbacks(engine, seed=7 * k + j) for j in range(2)]

    alone = [work(k) for k in range(THREADS)]
    assert run_threads(work) == alone


def shared_model(engine):
    """Parameters shared by every thread. Dyadic numbers: every sum of products below is exact,
    so the order in which threads add into a shared grad cannot change the result."""
    V = engine.Value
    ws = [V(k / 8) for k in range(-3, 5)]
    b = V(0.5)
    return ws, b


def thread_loss(engine, ws, b, k, rows=40):
    """One thread's graph over the shared parameters: sum of (w.x + b) * c over its own inputs."""
    V = engine.Value
    rng = random.Random(k)
    xs = [[V(rng.randrange(-4, 5)) for _ in ws] for _ in range(rows)]
    outs = [engine.dot(ws, x, b) * rng.randrange(1, 4) for x in xs]
    loss = engine.sum_values(outs)
    return loss, xs


def test_shared_parameters_own_graphs(engine):
    """Threads build their own graphs over shared parameters at the same time and back-propagate
    them: each thread's own numbers (its loss, its inputs' grads) are the single-threaded ones."""
    ws, b = shared_model(engine)

    def work(k):
        loss, xs = thread_loss(engine, ws, b, k)
        loss.backward()
        return loss.data, [[x.grad for x in row] for row in xs]

    alone = [work(k) for k in range(THREADS)]
    assert run_threads(work) == alone
    assert [w.data for w in ws] == [k / 8 for k in range(-3, 5)]  # read-only: untouched


def test_concurrent_backward_accumulates_into_shared_grads(engine):
    """backward() from several threads over graphs sharing the parameters: each parameter's grad
    is the sum of every thread's contribution, none lost (the compiled engine's guarantee)."""
    if engine.name == "py":
        pytest.skip("the reference engine's backward() is Python code: concurrent sweeps over "
                    "shared nodes can lose updates (as micrograd's); documented, not guaranteed")
    ws, b = shared_model(engine)

    # expected: every thread's contribution, computed one thread at a time on fresh parameters
    expected_w = [0.0] * len(ws)
    expected_b = 0.0
    for k in range(THREADS):
        ws1, b1 = shared_model(engine)
        loss, _ = thread_loss(engine, ws1, b1, k)
        for _ in range(5):
            loss.backward()
        expected_w = [e + w.grad for e, w in zip(expected_w, ws1)]
        expected_b += b1.grad

    def work(k):
        loss, _ = thread_loss(engine, ws, b, k)
        for _ in range(5):
            loss.backward()

    run_threads(work)
    assert [w.grad for w in ws] == expected_w
    assert b.grad == expected_b
    assert any(expected_w)  # the test means something


def test_threads_creating_and_dropping_values(engine):
    """Facades created in one thread and freed in another (shared lists), while other threads
    build graphs: the arena's counts stay consistent and the numbers stay right."""
    V = engine.Value
    shared = [V(float(i)) for i in range(200)]
    lock = threading.Lock()

    def work(k):
        rng = random.Random(k)
        total = 0.0
        for _ in range(300):
            with lock:  # the list itself is shared; the Values are freed wherever they die
                i = rng.randrange(len(shared))
                v = shared[i]
                shared[i] = v * 1.0 + 0.0  # same number, the old facade may be freed here
            total += v.data
        return total

    expected_values = sorted(v.data for v in shared)
    run_threads(work)
    assert sorted(v.data for v in shared) == expected_values
    s = engine.sum_values(shared)
    s.backward()
    assert all(v.grad == 1.0 for v in shared)
    assert s.data == sum(range(200))


def test_two_threads_freeing_graphs_at_once_leave_nothing_behind(engine):
    # thread A's teardown runs a finalizer that waits (the GIL let go); thread B drops a graph
    # meanwhile (its nodes only wait, A's teardown running) and calls backward(), which frees
    # them first -- running a finalizer that waits too -- and A's teardown ends before B's
    # freeing does. The last to end must leave freeing on: a version restored the flag as B
    # found it, and every release after that only queued its nodes (live grew without end)
    Value = engine.Value
    a_waits, b_waits, b_inside = threading.Event(), threading.Event(), threading.Event()

    class Waiter:
        def __init__(self, event, inside=None):
            self.event, self.inside = event, inside

        def __del__(self):
            if self.inside:
                self.inside.set()
            self.event.wait(30)

    def hand_built(x, waiter):  # a node whose callable holds the waiter, under one more op
        h = Value(x.data, (x,), "hold")
        h._backward = lambda waiter=waiter: None
        return h * 2.0

    x = Value(0.5)
    a_in = threading.Event()
    a_graph = [hand_built(x, Waiter(a_waits, a_in))]
    b_graph = [hand_built(x, Waiter(b_waits, b_inside))]
    live = x * 3.0
    grads = []

    def thread_a():
        a_graph.clear()  # A's teardown: its finalizer waits for a_waits

    def thread_b():
        a_in.wait(30)
        b_graph.clear()  # only waits: A's teardown is running
        x.grad = 0.0
        live.backward()  # frees B's graph first: its finalizer waits for b_waits
        grads.append(x.grad)

    ta, tb = threading.Thread(target=thread_a), threading.Thread(target=thread_b)
    ta.start()
    tb.start()
    assert b_inside.wait(30) or not engine.arena_stats  # (reference: B's graph went at once)
    a_waits.set()
    ta.join(30)
    b_waits.set()
    tb.join(30)
    assert grads == [3.0]
    if engine.arena_stats:
        base = engine.arena_stats()["live"]
        for _ in range(10):  # each freed at once again
            y = x * 2.0 + 1.0
            del y
            assert engine.arena_stats()["live"] == base
