"""The benchmark workloads, shared by `python -m micrograd_fast bench` and the suite in bench/.

Engines (each one is skipped when it is not installed):

* ``fast``            -- micrograd_fast's compiled engine (micrograd_fast._engine), nn over it;
* ``reference``       -- micrograd_fast.reference, the pure-Python engine, nn over it;
* ``micrograd``       -- upstream micrograd as users run it, cyclic garbage collector on;
* ``micrograd-gcoff`` -- upstream micrograd with the garbage collector off in the timed region
  (every upstream node sits in a reference cycle through its ``_backward`` closure, so with gc on
  the collector keeps re-traversing the growing graph and dominates the forward pass);
* ``torch``           -- 0-dim float64 tensors with requires_grad, and a scalar MLP written
  like micrograd's (the "what if you used torch scalars" comparison).

Workloads:

* ``binary-op``     -- ns per op of ``x = x * a + b`` repeated inside a function (forward only;
  the graph is freed outside the timed region);
* ``backward``      -- ns per node of backward() on a fresh, wide, shallow ~100k-node graph;
* ``demo-step``     -- ms per training step of micrograd's demo: MLP(2, [16, 16, 1]) on 100
  moons points, SVM loss + L2, zero_grad, backward, SGD update (micrograd_fast.demo.train_step);
* ``memory``        -- bytes per node of a long graph, measured in a fresh subprocess: tracemalloc
  for the pure-Python engines, the growth of the resident set for the compiled engine and torch;
* ``deepest-chain`` -- the deepest chain (10^3 ... 10^7 nodes, by decades) each engine can build,
  run backward() on and free, each attempt in a subprocess with a timeout.

A timed workload is a `Case`: an untimed ``setup()`` and a timed ``run()``, both without arguments,
so the pytest suite hands them to ``benchmark.pedantic`` and the command line times them itself.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Callable, Optional

from . import demo

# An engine is a types.SimpleNamespace (see load_engine); results are plain JSON-ready dicts.
Engine = Any
Result = dict[str, Any]

ENGINES = ("fast", "reference", "micrograd", "micrograd-gcoff", "torch")
WORKLOADS = ("binary-op", "backward", "demo-step", "memory", "deepest-chain")
TIMED = ("binary-op", "backward", "demo-step")  # the workloads that are a Case
UNITS = {
    "binary-op": "ns/op",
    "backward": "ns/node",
    "demo-step": "ms/step",
    "memory": "B/node",
    "deepest-chain": "nodes",
}
BASELINES = ("reference", "micrograd", "micrograd-gcoff", "torch")  # the table's ratio columns
PYTHON_ENGINES = ("reference", "micrograd", "micrograd-gcoff")  # objects tracemalloc can see

# Sizes. "smoke" runs everything in seconds (CI keeps the suite from rotting), "quick" and
# "default" are the command line's, "full" is the pytest suite's real measurement.
# binop_steps: steps of x = x*a + b (2 ops each); bw_width x bw_layers: the backward graph;
# demo_points: moons points per step; mem_nodes: nodes of the memory graph; chain_max: the deepest
# chain tried per engine kind; chain_timeout / chain_budget: seconds per attempt / per engine.
SIZES: dict[str, dict[str, Any]] = {
    "smoke": dict(binop_steps=200, bw_width=16, bw_layers=4, demo_points=8, mem_nodes=20_000,
                  chain_max=dict(compiled=3, python=3, torch=3), chain_timeout=60, chain_budget=60),
    "quick": dict(binop_steps=5_000, bw_width=250, bw_layers=20, demo_points=100, mem_nodes=50_000,
                  chain_max=dict(compiled=6, python=4, torch=4), chain_timeout=20, chain_budget=10),
    "default": dict(binop_steps=25_000, bw_width=1000, bw_layers=50, demo_points=100,
                    mem_nodes=100_000, chain_max=dict(compiled=7, python=5, torch=5),
                    chain_timeout=30, chain_budget=20),
    "full": dict(binop_steps=50_000, bw_width=1000, bw_layers=50, demo_points=100,
                 mem_nodes=1_000_000, chain_max=dict(compiled=7, python=6, torch=6),
                 chain_timeout=120, chain_budget=180),
}
SIZE_ENV = "MGF_BENCH_SIZE"  # smoke | quick | default | full, for the pytest suite


class EngineUnavailable(Exception):
    """The engine is not installed (or does not load) here; its benchmarks are skipped."""


# ---- engines ----


def load_engine(name: str) -> Engine:
    """A namespace describing one engine: name, kind, Value (leaf factory), const (input
    factory), nn (module with MLP), gc_off, version. Raises EngineUnavailable when absent."""
    if name == "fast":
        from . import engine as selector
        from . import nn

        try:
            module = selector._load_compiled()
        except ImportError as exc:
            raise EngineUnavailable(f"compiled engine not built: {exc}") from None
        return _engine_ns(name, "compiled", module.Value, nn.over(module), version=_version())
    if name == "reference":
        from . import nn, reference

        return _engine_ns(name, "python", reference.Value, nn.over(reference), version=_version())
    if name in ("micrograd", "micrograd-gcoff"):
        try:
            import micrograd.engine
            import micrograd.nn
        except ImportError:
            raise EngineUnavailable("upstream micrograd is not installed") from None
        return _engine_ns(name, "python", micrograd.engine.Value, micrograd.nn,
                          gc_off=name == "micrograd-gcoff", version=_dist_version("micrograd"))
    if name == "torch":
        try:
            import torch
        except ImportError:
            raise EngineUnavailable("torch is not installed") from None

        def leaf(x: float) -> Any:
            return torch.tensor(float(x), dtype=torch.float64, requires_grad=True)

        def const(x: float) -> Any:
            return torch.tensor(float(x), dtype=torch.float64)

        return _engine_ns(name, "torch", leaf, _torch_nn(torch), const=const,
                          version=torch.__version__)
    raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")


def _engine_ns(name: str, kind: str, Value: Callable[[float], Any], nn: Any,
               const: Optional[Callable[[float], Any]] = None, gc_off: bool = False,
               version: Optional[str] = None) -> Engine:
    return types.SimpleNamespace(name=name, kind=kind, Value=Value, const=const or Value, nn=nn,
                                 gc_off=gc_off, version=version)


def available_engines(names: Iterable[str] = ENGINES) -> tuple[dict[str, Engine], dict[str, str]]:
    """({name: engine} for the engines present, {name: reason} for the absent ones)."""
    present: dict[str, Engine] = {}
    absent: dict[str, str] = {}
    for name in names:
        try:
            present[name] = load_engine(name)
        except EngineUnavailable as exc:
            absent[name] = str(exc)
    return present, absent


def _torch_nn(torch: Any) -> types.SimpleNamespace:
    """micrograd's nn.py over 0-dim torch tensors: same structure, same initialization order,
    same math (a neuron is sum(w_i * x_i, start=b), then relu), so after random.seed(s) it holds
    micrograd's parameters."""

    def param(x: float) -> Any:
        return torch.tensor(float(x), dtype=torch.float64, requires_grad=True)

    class Module:
        def zero_grad(self) -> None:
            for p in self.parameters():
                p.grad = None  # a tensor's grad cannot be the int 0

        def parameters(self) -> list[Any]:
            return []

    class Neuron(Module):
        def __init__(self, nin: int, nonlin: bool = True) -> None:
            self.w = [param(random.uniform(-1, 1)) for _ in range(nin)]
            self.b = param(0)
            self.nonlin = nonlin

        def __call__(self, x: Sequence[Any]) -> Any:
            act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
            return act.relu() if self.nonlin else act

        def parameters(self) -> list[Any]:
            return self.w + [self.b]

    class Layer(Module):
        def __init__(self, nin: int, nout: int, nonlin: bool = True) -> None:
            self.neurons = [Neuron(nin, nonlin=nonlin) for _ in range(nout)]

        def __call__(self, x: Sequence[Any]) -> Any:
            out = [n(x) for n in self.neurons]
            return out[0] if len(out) == 1 else out

        def parameters(self) -> list[Any]:
            return [p for n in self.neurons for p in n.parameters()]

    class MLP(Module):
        def __init__(self, nin: int, nouts: list[int]) -> None:
            sz = [nin] + nouts
            self.layers = [Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1)
                           for i in range(len(nouts))]

        def __call__(self, x: Any) -> Any:
            for layer in self.layers:
                x = layer(x)
            return x

        def parameters(self) -> list[Any]:
            return [p for layer in self.layers for p in layer.parameters()]

    return types.SimpleNamespace(Module=Module, Neuron=Neuron, Layer=Layer, MLP=MLP)


def _version() -> str:
    from . import __version__

    return __version__


def _dist_version(dist: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # not installed as a distribution: unknown, not an error
        return None


# ---- timed workloads ----


class Case:
    """One timed workload on one engine: setup() untimed, run() timed, count units per run.

    Every round starts from a collected heap (gc.collect() in setup), so no round pays for an
    earlier round's garbage: the difference between upstream's gc on and off is the collector's
    work during the round itself. check() (untimed, after the runs) returns a short dict that the
    suite asserts on, so a benchmark whose engine computes something else fails instead of being
    timed.
    """

    def __init__(self, workload: str, engine: Engine, count: int,
                 setup: Optional[Callable[[], None]], run: Callable[[], None],
                 check: Optional[Callable[[], Result]] = None, extra: Optional[Result] = None,
                 release: Optional[Callable[[], None]] = None) -> None:
        self.workload, self.engine, self.count = workload, engine, count
        self.unit = UNITS[workload]
        self._setup, self._run, self._check, self._release = setup, run, check, release
        self.extra = dict(extra or {})
        self.gc_off = engine.gc_off

    def setup(self) -> None:
        if self._release:
            self._release()  # the last round's graph
        gc.collect()  # upstream's graphs are cyclic garbage: freed here, untimed
        if self._setup:
            self._setup()

    def run(self) -> None:
        if not self.gc_off:
            self._run()
            return
        gc.disable()
        try:
            self._run()
        finally:
            gc.enable()

    def check(self) -> Result:
        return self._check() if self._check else {}

    def release(self) -> None:
        """Free the last round's graph now (untimed), upstream's cyclic garbage included, so
        that no later timed region -- of this engine or another -- pays for collecting it."""
        if self._release:
            self._release()
        gc.collect()

    def per_unit(self, seconds: float) -> float:
        """Seconds of one run -> the workload's unit (ns per op/node, ms per step)."""
        scale = 1e3 if self.unit.startswith("ms") else 1e9
        return seconds * scale / self.count


def make_case(workload: str, engine: Engine, size: str | dict[str, Any],
              verify: bool = True) -> Case:
    """The Case of a timed workload ('binary-op', 'backward', 'demo-step') for an engine.

    verify=False skips the demo's extra forward pass (the loss before training, which check()
    reports so the suite can compare engines); the command line does without it."""
    sizes = SIZES[size] if isinstance(size, str) else size
    if workload == "binary-op":
        return _binary_op_case(engine, sizes["binop_steps"])
    if workload == "backward":
        return _backward_case(engine, sizes["bw_width"], sizes["bw_layers"])
    if workload == "demo-step":
        return _demo_case(engine, sizes["demo_points"], verify)
    raise ValueError(f"{workload!r} is not a timed workload ({', '.join(TIMED)})")


def binary_op_expected(steps: int, x0: float = 1.0, a: float = 0.5, b: float = 0.25) -> float:
    """The float recurrence x = x*a + b that the binary-op graph must compute."""
    x = x0
    for _ in range(steps):
        x = x * a + b
    return x


def _binary_op_case(engine: Engine, steps: int) -> Case:
    Value = engine.Value
    a, b, x0 = Value(0.5), Value(0.25), Value(1.0)
    kept: list[Any] = []  # the last graph: freed by release() in setup(), outside the timed region

    def run() -> None:
        x = x0
        for _ in range(steps):
            x = x * a + b
        kept.append(x)

    def check() -> Result:
        return dict(data=float(kept[-1].data), expected=binary_op_expected(steps))

    return Case("binary-op", engine, 2 * steps, None, run, check, extra=dict(steps=steps),
                release=kept.clear)


def build_backward_graph(engine: Engine, width: int,
                         layers: int) -> tuple[Any, list[Any], Any, int]:
    """A wide, shallow graph: `layers` layers of y_i = (x_i + x_{i+1 mod width}) * h over
    `width` leaves, then a balanced tree of additions down to one output.

    The depth is 2*layers + log2(width) nodes, so upstream's recursive sort copes. Every layer
    averages (h = 0.5), so values stay bounded; d out / d leaf = (2h)^layers = 1 exactly and
    d out / d h = 2 * layers * sum(leaves). Returns (out, leaves, h, node_count).
    """
    Value = engine.Value
    rng = random.Random(width * 1000 + layers)
    leaves = [Value(rng.uniform(-1, 1)) for _ in range(width)]
    h = Value(0.5)
    xs = leaves
    for _ in range(layers):
        xs = [(xs[i] + xs[(i + 1) % width]) * h for i in range(width)]
    while len(xs) > 1:  # balanced sum: depth log2(width), not width
        pairs = [xs[i] + xs[i + 1] for i in range(0, len(xs) - 1, 2)]
        xs = pairs + ([xs[-1]] if len(xs) % 2 else [])
    nodes = width + 1 + 2 * width * layers + (width - 1)
    return xs[0], leaves, h, nodes


def _backward_case(engine: Engine, width: int, layers: int) -> Case:
    graph: dict[str, Any] = {}  # this round's graph; released before setup() builds the next
    nodes = width + 1 + 2 * width * layers + (width - 1)

    def setup() -> None:
        out, leaves, h, _ = build_backward_graph(engine, width, layers)
        graph.update(out=out, leaves=leaves, h=h)

    def run() -> None:
        graph["out"].backward()

    def check() -> Result:
        leaves, h = graph["leaves"], graph["h"]
        total = sum(float(v.data) for v in leaves)
        return dict(leaf_grads=sorted({float(v.grad) for v in leaves}),
                    h_grad=float(h.grad), h_grad_expected=2 * layers * total)

    return Case("backward", engine, nodes, setup, run, check,
                extra=dict(width=width, layers=layers), release=graph.clear)


def _demo_case(engine: Engine, points: int, verify: bool = True) -> Case:
    X, y = demo.make_moons(n_samples=points, seed=1337)
    random.seed(1337)
    model = engine.nn.MLP(2, [16, 16, 1])
    Value = engine.const
    first_loss = None
    if verify:  # the loss before any step: the same on every engine (same seed, same weights)
        first_loss = float(demo.svm_loss(model, X, y, Value)[0].data)
    state = dict(k=0, loss=math.nan)
    steps = 100  # the demo's learning-rate schedule; rounds past 100 keep the last rate

    def run() -> None:
        k = min(int(state["k"]), steps - 1)
        state["loss"], _ = demo.train_step(model, X, y, Value, k, steps)
        state["k"] += 1

    def check() -> Result:
        return dict(first_loss=first_loss, last_loss=float(state["loss"]),
                    parameters=len(model.parameters()))

    return Case("demo-step", engine, 1, None, run, check, extra=dict(points=points))


# ---- memory and deepest chain: measured in fresh subprocesses ----


def _rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return peak if sys.platform == "darwin" else peak * 1024


def _chain(Value: Callable[[float], Any], n: int, a: Any) -> Any:
    """A chain of n additions x = x + a: n + 2 nodes, depth n."""
    x = Value(0.0)
    for _ in range(n):
        x = x + a
    return x


def _child_memory(name: str, nodes: int) -> Result:
    """In a fresh process: bytes per node of the x = x*a + b chain of `nodes` nodes."""
    engine = load_engine(name)
    # gc off for both upstream variants: a chain holds no garbage, so the bytes are the same,
    # but with gc on every collection re-traverses the growing chain (minutes at 10^6 nodes)
    gc.disable()
    Value = engine.Value
    a, b, x0 = Value(0.5), Value(0.25), Value(1.0)
    steps = nodes // 2
    gc.collect()
    use_tracemalloc = name in PYTHON_ENGINES
    if use_tracemalloc:
        import tracemalloc

        tracemalloc.start()
    rss0 = _rss_bytes()
    x = x0
    for _ in range(steps):
        x = x * a + b
    rss1 = _rss_bytes()
    result: Result = dict(nodes=2 * steps, rss_bytes=rss1 - rss0)
    if use_tracemalloc:
        result["traced_bytes"] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        result["method"] = "tracemalloc"
        result["bytes_per_node"] = result["traced_bytes"] / result["nodes"]
    else:
        result["method"] = "rss"
        result["bytes_per_node"] = result["rss_bytes"] / result["nodes"]
    if engine.kind == "compiled":
        from . import engine as selector

        stats = selector._load_compiled().arena_stats()
        result["arena_bytes_per_node"] = stats["bytes_per_node"]
    result["data"] = float(x.data)
    return result


def _child_chain(name: str, n: int) -> Result:
    """In a fresh process: build a chain of n additions, backward, check the gradient, free it."""
    engine = load_engine(name)
    if engine.gc_off:
        gc.disable()
    a = engine.Value(1.0)
    start = time.perf_counter()
    x = _chain(engine.Value, n, a)
    built = time.perf_counter()
    x.backward()
    done = time.perf_counter()
    grad = float(a.grad)
    del x
    gc.collect()  # freeing the chain is part of surviving it
    freed = time.perf_counter()
    return dict(n=n, grad_ok=grad == float(n), build_s=built - start, backward_s=done - built,
                free_s=freed - done)


def _child_main(argv: Optional[list[str]] = None) -> int:
    """Entry of the measuring subprocesses: prints one JSON line."""
    argv = sys.argv[1:] if argv is None else argv
    what, name, n = argv[0], argv[1], int(argv[2])
    result = _child_memory(name, n) if what == "memory" else _child_chain(name, n)
    print(json.dumps(result), flush=True)
    return 0


def _run_child(what: str, name: str, n: int, timeout: float) -> tuple[str, Optional[Result]]:
    """Run _child_main in a fresh interpreter that imports this very package.

    Returns (status, result): status "ok", "timeout" or "error (exit code N): <last line of
    stderr>"; result the child's JSON dict when status is "ok"."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    code = "import sys; from micrograd_fast.benchmark import _child_main; sys.exit(_child_main())"
    try:
        proc = subprocess.run([sys.executable, "-c", code, what, name, str(n)], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", None
    if proc.returncode != 0:
        lines = (proc.stderr or "").strip().splitlines() or ["(no message)"]
        return f"error (exit code {proc.returncode}): {lines[-1][:200]}", None
    result: Result = json.loads(proc.stdout.strip().splitlines()[-1])
    return "ok", result


def measure_memory(name: str, nodes: int, timeout: float = 600) -> Result:
    """Bytes per node of a `nodes`-node graph for engine `name` (a dict; see _child_memory)."""
    status, result = _run_child("memory", name, nodes, timeout)
    if status != "ok" or result is None:
        raise RuntimeError(f"memory measurement of {name} failed: {status}")
    return result


def deepest_chain(name: str, max_exp: int, timeout: float, budget: float) -> Result:
    """The deepest chain (10^3 ... 10^max_exp nodes) engine `name` runs backward on.

    Each attempt runs in its own process with a timeout; the search stops at the first failure,
    at max_exp, or when the engine's time budget is spent. Returns a dict: deepest (0 when even
    10^3 fails), attempts {n: status}, stopped (why the search ended)."""
    attempts: dict[int, str] = {}
    deepest, stopped = 0, f"cap 10^{max_exp}"
    spent = 0.0
    for exp in range(3, max_exp + 1):
        n = 10 ** exp
        if spent > budget:
            stopped = f"time budget {budget:g} s spent before 10^{exp}"
            break
        start = time.perf_counter()
        status, result = _run_child("chain", name, n, timeout)
        spent += time.perf_counter() - start
        if result is not None and not result["grad_ok"]:
            status = "wrong gradient"
        attempts[n] = status if result is None or status != "ok" else (
            f"ok (build {result['build_s']:.2f} s, backward {result['backward_s']:.2f} s)")
        if status != "ok":
            stopped = f"10^{exp}: {status}"
            break
        deepest = n
    return dict(deepest=deepest, attempts=attempts, stopped=stopped)


def chain_cap(engine_kind: str, sizes: dict[str, Any]) -> int:
    """The largest decade tried for an engine kind ('compiled', 'python', 'torch')."""
    return int(sizes["chain_max"][engine_kind])


# ---- the command line: run everything, print one table ----


def machine_info() -> Result:
    """CPU model, cores, Python and engine versions: the context every number needs."""
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load: Optional[list[float]]
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return dict(cpu=cpu or platform.processor() or platform.machine(), cores=os.cpu_count(),
                python=platform.python_version(), implementation=platform.python_implementation(),
                platform=platform.platform(), load_average=load)


# rounds (best of N) for the command line, and the seconds (setup included) after which an engine
# gets no further rounds of a workload: upstream micrograd takes ~1 s per demo step with gc on
# and torch scalars ~1 s to build the backward graph, so the slow engines get few rounds
ROUNDS = {"fast": 15, "reference": 5, "micrograd": 3, "micrograd-gcoff": 3, "torch": 3}
BUDGET_S = {"smoke": 0.0, "quick": 0.5, "default": 2.0, "full": 10.0}
MIN_ROUNDS = {"smoke": 1, "quick": 1, "default": 2, "full": 3}  # however long they take


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Hide every object alive now (the interpreter's, torch's, pytest's) from the collector.

    With gc on, upstream micrograd's cost per op is mostly the collector re-traversing the heap:
    it triples once torch is imported. Frozen, the collector sees only the benchmark's own
    objects, as in a small user script."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_all(engines: Iterable[str], size: str = "default", rounds: Optional[dict[str, int]] = None,
            budget: Optional[float] = None, workloads: Iterable[str] = WORKLOADS,
            log: Optional[Callable[[str], None]] = None) -> Result:
    """Measure every workload on every engine; the results dict that --json writes.

    Rounds of the timed workloads are interleaved across engines (this machine drifts between
    fast and slow phases, so an engine should not get all its rounds in one phase)."""
    sizes = SIZES[size]
    rounds = {**ROUNDS, **(rounds or {})}
    if budget is None:
        budget = BUDGET_S.get(size, 0.0)
    present, absent = available_engines(engines)
    results: dict[str, Result] = {}
    with frozen_heap():  # the collector sees only the benchmark's objects
        for workload in workloads:
            started = time.perf_counter()
            entry: Result = {"unit": UNITS[workload], "engines": {}}
            results[workload] = entry
            if workload in TIMED:
                min_rounds = MIN_ROUNDS.get(size, 1)
                _run_timed(workload, present, sizes, rounds, budget, min_rounds, entry)
            elif workload == "memory":
                for name in present:
                    try:
                        m = measure_memory(name, sizes["mem_nodes"])
                    except RuntimeError as exc:  # reported, not fatal: other engines still count
                        entry.setdefault("errors", {})[name] = str(exc)
                        continue
                    bpn = m["bytes_per_node"]
                    entry["engines"][name] = dict(best=bpn, median=bpn, runs=[bpn], extra=m)
                entry["count"] = sizes["mem_nodes"]
            else:  # deepest-chain
                for name, engine in present.items():
                    d = deepest_chain(name, chain_cap(engine.kind, sizes), sizes["chain_timeout"],
                                      sizes["chain_budget"])
                    entry["engines"][name] = dict(best=d["deepest"], median=d["deepest"],
                                                  runs=[d["deepest"]], extra=d)
            add_ratios(entry)
            entry["elapsed_s"] = time.perf_counter() - started
            if log:
                log(f"{workload}: {entry['elapsed_s']:.1f} s")
    backend: Optional[str]
    try:
        from . import engine as selector

        backend = selector.BACKEND
    except ImportError:  # no compiled engine and no MICROGRAD_FAST_PURE_PYTHON
        backend = None
    return dict(
        machine=machine_info(),
        settings=dict(size=size, sizes=sizes, rounds=rounds, budget_s=budget),
        engines={name: dict(available=True, version=e.version, kind=e.kind)
                 for name, e in present.items()}
        | {name: dict(available=False, reason=r) for name, r in absent.items()},
        backend=backend,
        results=results,
    )


def _run_timed(workload: str, present: dict[str, Engine], sizes: dict[str, Any],
               rounds: dict[str, int], budget: float, min_rounds: int, entry: Result) -> None:
    cases = {name: make_case(workload, engine, sizes, verify=False)
             for name, engine in present.items()}
    runs: dict[str, list[float]] = {name: [] for name in cases}
    spent = {name: 0.0 for name in cases}
    checks: dict[str, Result] = {}
    for r in range(max(rounds[name] for name in cases) if cases else 0):
        for name, case in cases.items():
            if r >= rounds[name] or (r >= min_rounds and spent[name] > budget):
                continue
            begin = time.perf_counter()
            case.setup()
            start = time.perf_counter()
            case.run()
            end = time.perf_counter()
            checks[name] = case.check()
            case.release()  # the next engine's timed region must not collect this graph
            spent[name] += time.perf_counter() - begin  # the budget counts the untimed parts too
            runs[name].append(case.per_unit(end - start))
    for name, case in cases.items():
        entry["engines"][name] = dict(best=min(runs[name]), median=statistics.median(runs[name]),
                                      runs=runs[name], extra=dict(case.extra, **checks[name]))
        entry["count"] = case.count


def add_ratios(entry: Result) -> None:
    """ratios[baseline] = baseline's best / engine's best: how many times faster (or smaller) the
    engine is. Not defined for deepest-chain (bigger is better there, and 0 happens)."""
    if entry["unit"] == "nodes":
        for result in entry["engines"].values():
            result["ratios"] = {}
        return
    for result in entry["engines"].values():
        result["ratios"] = {
            base: entry["engines"][base]["best"] / result["best"]
            for base in BASELINES
            if base in entry["engines"] and result["best"] > 0
        }


def format_table(report: Result) -> str:
    """The one table: workload x engine, best and median, and the ratios to the baselines."""
    m = report["machine"]
    versions = ", ".join(f"{name} {info.get('version') or '?'}"
                         for name, info in report["engines"].items()
                         if info["available"] and name != "micrograd-gcoff")
    load = "" if not m.get("load_average") else f", load average {m['load_average'][0]:g}"
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, {m['implementation']} {m['python']} "
             f"({m['platform']}){load}",
             f"engines: {versions}; size {report['settings']['size']}"]
    missing = [f"{n} ({i['reason']})" for n, i in report["engines"].items() if not i["available"]]
    if missing:
        lines.append("skipped: " + "; ".join(missing))
    header = ["workload", "unit", "engine", "best", "median"] + [f"vs {b}" for b in BASELINES]
    rows: list[list[str]] = []
    for workload, entry in report["results"].items():
        for name, result in entry["engines"].items():
            best, median = _num(result["best"]), _num(result["median"])
            if workload == "deepest-chain" and result["best"] == 0:
                best = median = "<1,000"  # failed on the shortest chain tried
            row = [workload, entry["unit"], name, best, median]
            for base in BASELINES:
                ratio = result["ratios"].get(base)
                row.append("-" if ratio is None else _ratio(ratio))
            rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    left = 3  # workload, unit, engine are left-aligned; numbers right-aligned

    def fmt(row: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i < left else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    lines += ["", fmt(header), fmt(["-" * w for w in widths])]
    last = None
    for row in rows:
        if last is not None and row[0] != last:
            lines.append("")
        last = row[0]
        lines.append(fmt(row))
    lines += ["", "ratios: baseline's best / engine's best (x times faster, or smaller for B/node)"]
    if "deepest-chain" in report["results"]:
        lines.append("deepest-chain: the longest chain (nodes, by decades from 10^3) that "
                     "backward() ran on; the search ended at:")
    for name, result in report["results"].get("deepest-chain", {}).get("engines", {}).items():
        lines.append(f"  {name}: {result['extra']['stopped']}")
    for workload, entry in report["results"].items():
        for name, error in entry.get("errors", {}).items():
            lines.append(f"  {workload} on {name} failed: {error}")
    return "\n".join(lines)


def plot_ratios(report: Result, path: str | os.PathLike[str],
                baseline: str = "micrograd-gcoff") -> None:
    """A PNG of every engine's ratio to `baseline` per workload (log scale, higher = better)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None
    workloads = [w for w, e in report["results"].items()
                 if e["unit"] != "nodes" and baseline in e["engines"]]
    engines = [n for n in ENGINES if any(n in report["results"][w]["engines"] for w in workloads)]
    fig, ax = plt.subplots(figsize=(1.8 + 1.9 * len(workloads), 4.5))
    width = 0.8 / max(len(engines), 1)
    for i, name in enumerate(engines):
        xs: list[float] = []
        ys: list[float] = []
        for j, workload in enumerate(workloads):
            ratio = report["results"][workload]["engines"].get(name, {}).get("ratios", {})
            if baseline in ratio:
                xs.append(j + (i - (len(engines) - 1) / 2) * width)
                ys.append(ratio[baseline])
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, labels=[_ratio(y) for y in ys], fontsize=7, padding=1)
    ax.set_yscale("log")
    ax.axhline(1.0, color="k", linewidth=0.8)
    ax.set_xticks(range(len(workloads)),
                  [f"{w}\n({report['results'][w]['unit']})" for w in workloads])
    ax.set_ylabel(f"x better than {baseline} (log)")
    m = report["machine"]
    ax.set_title(f"micrograd_fast bench: ratio to {baseline} -- {m['cpu']}, {m['cores']} cores, "
                 f"Python {m['python']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _num(x: float) -> str:
    if isinstance(x, int):
        return f"{x:,}"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}" if x < 10 else f"{x:.1f}"


def _ratio(r: float) -> str:
    return f"{r:,.0f}x" if r >= 100 else f"{r:.3g}x"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m micrograd_fast bench",
        description="Time micrograd_fast's compiled engine against its pure-Python reference, "
        "upstream micrograd (gc on and off) and torch scalars (when installed), and print one "
        "table. The full pytest-benchmark suite lives in bench/ of the source tree.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a few seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--engines", nargs="+", metavar="ENGINE",
                        help=f"engines to run (default: all present of {', '.join(ENGINES)}); "
                        "comma-separated also works")
    parser.add_argument("--plot", metavar="PATH",
                        help="also save a PNG of the ratios to micrograd-gcoff (needs matplotlib)")
    parser.add_argument("--workloads", nargs="+", metavar="WORKLOAD",
                        help=f"workloads to run (default: {', '.join(WORKLOADS)})")
    parser.add_argument("--size", choices=sorted(SIZES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    engines = _split(args.engines) or list(ENGINES)
    workloads = _split(args.workloads) or list(WORKLOADS)
    for name in engines:
        if name not in ENGINES:
            parser.error(f"unknown engine {name!r} (choose from {', '.join(ENGINES)})")
    for name in workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r} (choose from {', '.join(WORKLOADS)})")
    size = args.size or ("quick" if args.quick else "default")
    start = time.perf_counter()
    report = run_all(engines, size=size, workloads=workloads,
                     log=lambda msg: print(msg, file=sys.stderr, flush=True))
    report["elapsed_s"] = time.perf_counter() - start
    print(format_table(report))
    print(f"\n(total {report['elapsed_s']:.1f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=_json_default)
            f.write("\n")
        print(f"results written to {args.json}")
    if args.plot:
        plot_ratios(report, args.plot)
        print(f"plot saved to {args.plot}")
    return 0


def _split(values: Optional[Sequence[str]]) -> list[str]:
    return [v for item in values or () for v in item.split(",") if v]


def _json_default(x: object) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


if __name__ == "__main__":
    sys.exit(main())
