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

Workloads (the table's rows, in this order; UNITS gives each one's unit):

* ``binary-op``          -- ns per op of ``x = x * a + b`` repeated inside a function (forward
  only; the graph is freed outside the timed region);
* ``leaf``               -- ns per leaf of ``Value(x)`` through the type call, in a loop (made and
  dropped: a leaf's whole life);
* ``leaf-map``           -- ns per leaf of ``list(map(Value, row))`` over 64-float rows;
* ``leaf-numpy``         -- ns per leaf of ``Value(np.float64(x))`` (skipped without numpy);
* ``backward-layered``   -- ns per node of backward() on a fresh, wide, shallow ~100k-node graph
  (layers of ``(x_i + x_{i+1}) * h``; this was the ``backward`` row before the other shapes came);
* ``backward-tree``      -- ns per node, a balanced tree: two levels of products, then sums;
* ``backward-chain``     -- ns per node, a 10^6-node chain ``x = x * a + b`` (10^5 for the
  pure-Python engines; upstream's recursive sort runs in a thread with a big stack);
* ``backward-fanout``    -- ns per node, one leaf used by every product ``x * w_i``, then a
  balanced sum;
* ``backward-mlp``       -- µs per backward() of the demo's loss graph (each engine's own graph:
  micrograd_fast's nn fuses ``w·x + b`` into one node);
* ``demo-step``          -- ms per training step of micrograd's demo: MLP(2, [16, 16, 1]) on 100
  moons points, SVM loss + L2, zero_grad, backward, SGD update (micrograd_fast.demo.train_step);
* ``demo-step-replayed`` -- ms per step on a retained demo graph: recompute() + zero_grad +
  backward + optimizer step, against the other engines' eager step (skipped until
  ``Value.recompute`` and ``micrograd_fast.optim`` exist);
* ``digits-step``        -- ms per minibatch step (32 samples) of MLP(64, [32, 10]) on
  scikit-learn's 8x8 digits, multi-class hinge loss written with relu (skipped without sklearn);
* ``custom-op-step``     -- ms per training step of the micrograd lecture's MLP(3, [4, 4, 1]) on
  its 4 samples, each neuron's tanh a hand-built op (a Python ``_backward`` closure set on a
  ``Value(t, (x,), 'tanh')``), as scripts that define their own ops run (skipped on torch);
* ``param-loop``         -- µs per ``for p in params: p.data -= lr * p.grad`` over the demo
  model's 337 parameters;
* ``zero-grad``          -- µs per ``model.zero_grad()`` of the demo model;
* ``optimizer-step``     -- ns per parameter of ``micrograd_fast.optim.SGD.step()`` against the
  others' SGD loop (skipped until ``micrograd_fast.optim`` exists);
* ``teardown``           -- ns per node to free a step's graph: dropping the last reference (and,
  for upstream micrograd, whose graphs are cyclic, the gc.collect() that actually frees them);
* ``memory``             -- bytes per node of a long graph, measured in a fresh subprocess:
  tracemalloc for the pure-Python engines, the growth of the resident set for the compiled
  engine and torch;
* ``deepest-chain``      -- the deepest chain (10^3 ... 10^7 nodes, by decades) each engine can
  build, run backward() on and free, each attempt in a subprocess with a timeout.

A timed workload is a `Case`: an untimed ``setup()`` and a timed ``run()``, both without arguments,
so the pytest suite hands them to ``benchmark.pedantic`` and the command line times them itself.
A workload that cannot run on an engine (a missing optional package, an API not there yet) raises
`WorkloadUnavailable` from make_case; the table shows the reason instead of a number.
Adding a workload: a line in UNITS, a builder ``(engine, sizes, verify) -> Case`` in _BUILDERS,
its sizes in SIZES, and a test in bench/.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
import types
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Callable, Optional

from . import demo
from .digits import hinge_loss

# An engine is a types.SimpleNamespace (see load_engine); results are plain JSON-ready dicts.
Engine = Any
Result = dict[str, Any]

ENGINES = ("fast", "reference", "micrograd", "micrograd-gcoff", "torch")
# every workload and its unit, in the table's order (per_unit() reads the prefix: ns, µs, ms)
UNITS = {
    "binary-op": "ns/op",
    "leaf": "ns/leaf",
    "leaf-map": "ns/leaf",
    "leaf-numpy": "ns/leaf",
    "backward-layered": "ns/node",
    "backward-tree": "ns/node",
    "backward-chain": "ns/node",
    "backward-fanout": "ns/node",
    "backward-mlp": "µs/backward",
    "demo-step": "ms/step",
    "demo-step-replayed": "ms/step",
    "demo-step-own-nn": "ms/step",
    "digits-step": "ms/step",
    "custom-op-step": "ms/step",
    "param-loop": "µs/loop",
    "zero-grad": "µs/call",
    "optimizer-step": "ns/param",
    "teardown": "ns/node",
    "memory": "B/node",
    "deepest-chain": "nodes",
}
WORKLOADS = tuple(UNITS)
UNTIMED = ("memory", "deepest-chain")  # measured in subprocesses, not a Case
TIMED = tuple(w for w in WORKLOADS if w not in UNTIMED)  # the workloads that are a Case
# names the command line's --workloads also accepts: a family of rows
GROUPS = {
    "backward": tuple(w for w in WORKLOADS if w.startswith("backward-")),
    "leaves": ("leaf", "leaf-map", "leaf-numpy"),
}
BASELINES = ("reference", "micrograd", "micrograd-gcoff", "torch")  # the table's ratio columns
PYTHON_ENGINES = ("reference", "micrograd", "micrograd-gcoff")  # objects tracemalloc can see

# Sizes. "smoke" runs everything in seconds (CI keeps the suite from rotting), "quick" and
# "default" are the command line's, "full" is the pytest suite's real measurement.
# binop_steps: steps of x = x*a + b (2 ops each); leaves: leaves made per round (leaf-map: in
# rows of 64); bw_width x bw_layers: the layered backward graph (and teardown's graph);
# tree_leaves: leaves of backward-tree (a multiple of 4); chain_nodes: backward-chain's nodes per
# engine kind (torch's 10^6 only at full size: ~20 s a round); fanout: the products of
# backward-fanout; demo_points: moons points per step (and in backward-mlp's graph);
# digits_batch: samples per digits step (custom-op-step has no size: the lecture's 4 samples);
# reps: loops per round of param-loop / zero-grad / optimizer-step; mem_nodes: nodes of the
# memory graph; chain_max: the deepest chain tried per engine kind; chain_timeout /
# chain_budget: seconds per attempt / per engine.
SIZES: dict[str, dict[str, Any]] = {
    "smoke": dict(binop_steps=200, leaves=256, bw_width=16, bw_layers=4, tree_leaves=64,
                  chain_nodes=dict(compiled=2_000, python=2_000, torch=2_000), fanout=64,
                  demo_points=8, digits_batch=2, reps=2, mem_nodes=20_000,
                  chain_max=dict(compiled=3, python=3, torch=3), chain_timeout=60, chain_budget=60),
    "quick": dict(binop_steps=5_000, leaves=20_000, bw_width=250, bw_layers=20,
                  tree_leaves=2**13, chain_nodes=dict(compiled=10**5, python=10**4, torch=10**5),
                  fanout=10_000, demo_points=100, digits_batch=32, reps=20, mem_nodes=50_000,
                  chain_max=dict(compiled=6, python=4, torch=4), chain_timeout=20, chain_budget=10),
    "default": dict(binop_steps=25_000, leaves=100_000, bw_width=1000, bw_layers=50,
                    tree_leaves=2**16, chain_nodes=dict(compiled=10**6, python=10**5, torch=10**5),
                    fanout=50_000, demo_points=100, digits_batch=32, reps=100,
                    mem_nodes=100_000, chain_max=dict(compiled=7, python=5, torch=5),
                    chain_timeout=30, chain_budget=20),
    "full": dict(binop_steps=50_000, leaves=500_000, bw_width=1000, bw_layers=50,
                 tree_leaves=2**16, chain_nodes=dict(compiled=10**6, python=10**5, torch=10**6),
                 fanout=50_000, demo_points=100, digits_batch=32, reps=200,
                 mem_nodes=1_000_000, chain_max=dict(compiled=7, python=6, torch=6),
                 chain_timeout=120, chain_budget=180),
}
SIZE_ENV = "MGF_BENCH_SIZE"  # smoke | quick | default | full, for the pytest suite


class EngineUnavailable(Exception):
    """The engine is not installed (or does not load) here; its benchmarks are skipped."""


class WorkloadUnavailable(Exception):
    """This workload cannot run on this engine here (an optional package is missing, or an API
    it measures does not exist yet); the message says why, and the table shows it."""


# ---- engines ----


def load_engine(name: str) -> Engine:
    """A namespace describing one engine: name, kind, Value (leaf factory), const (input
    factory), nn (module with MLP), gc_off, cyclic (graphs freed only by the collector),
    recursive (backward() recurses once per node of depth), set_param(p, data, grad),
    grad_of(v) -> float, version. Raises EngineUnavailable when absent."""
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
        # every upstream node is in a reference cycle (its _backward closure refers to it)
        # and its backward() sorts the graph recursively (deep graphs need call_deep)
        return _engine_ns(name, "python", micrograd.engine.Value, micrograd.nn,
                          gc_off=name == "micrograd-gcoff", cyclic=True, recursive=True,
                          version=_dist_version("micrograd"))
    if name == "torch":
        try:
            import torch
        except ImportError:
            raise EngineUnavailable("torch is not installed") from None

        def leaf(x: float) -> Any:
            return torch.tensor(float(x), dtype=torch.float64, requires_grad=True)

        def const(x: float) -> Any:
            return torch.tensor(float(x), dtype=torch.float64)

        def set_param(p: Any, data: float, grad: float) -> None:
            with torch.no_grad():
                p.fill_(data)
            p.grad = torch.tensor(grad, dtype=torch.float64)

        def grad_of(v: Any) -> float:
            return 0.0 if v.grad is None else float(v.grad)

        return _engine_ns(name, "torch", leaf, _torch_nn(torch), const=const,
                          set_param=set_param, grad_of=grad_of, version=torch.__version__)
    raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")


def _set_param(p: Any, data: float, grad: float) -> None:
    p.data = data
    p.grad = grad


def _grad_of(v: Any) -> float:
    return float(v.grad)


def _engine_ns(name: str, kind: str, Value: Callable[[float], Any], nn: Any,
               const: Optional[Callable[[float], Any]] = None, gc_off: bool = False,
               cyclic: bool = False, recursive: bool = False,
               set_param: Callable[[Any, float, float], None] = _set_param,
               grad_of: Callable[[Any], float] = _grad_of,
               version: Optional[str] = None) -> Engine:
    return types.SimpleNamespace(name=name, kind=kind, Value=Value, const=const or Value, nn=nn,
                                 gc_off=gc_off, cyclic=cyclic, recursive=recursive,
                                 set_param=set_param,
                                 grad_of=grad_of, version=version)


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


class ScriptNeuron:
    """micrograd's nn.Neuron as a script that has its own copy of nn.py defines it, over an
    engine's Value: ``sum((wi * xi for wi, xi in zip(self.w, x)), self.b)`` -- two nodes and a
    Python step per input, nothing fused -- then relu. The same draws as micrograd's."""

    def __init__(self, Value: Callable[[float], Any], nin: int, nonlin: bool = True) -> None:
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0)
        self.nonlin = nonlin

    def __call__(self, x: Sequence[Any]) -> Any:
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return act.relu() if self.nonlin else act

    def parameters(self) -> list[Any]:
        return self.w + [self.b]


class ScriptLayer:
    def __init__(self, Value: Callable[[float], Any], nin: int, nout: int, **kwargs: Any) -> None:
        self.neurons = [ScriptNeuron(Value, nin, **kwargs) for _ in range(nout)]

    def __call__(self, x: Sequence[Any]) -> Any:
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Any]:
        return [p for n in self.neurons for p in n.parameters()]


class ScriptMLP:
    """micrograd's nn.MLP as plain Python classes of the script's own (see ScriptNeuron)."""

    def __init__(self, Value: Callable[[float], Any], nin: int, nouts: list[int],
                 cleared_grad: Any = 0) -> None:
        self.cleared_grad = cleared_grad  # what zero_grad() sets: micrograd's 0 (torch: None)
        sz = [nin] + nouts
        self.layers = [ScriptLayer(Value, sz[i], sz[i + 1], nonlin=i != len(nouts) - 1)
                       for i in range(len(nouts))]

    def __call__(self, x: Sequence[Any]) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Any]:
        return [p for layer in self.layers for p in layer.parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = self.cleared_grad


def _torch_nn(torch: Any) -> types.SimpleNamespace:
    """micrograd's nn.py over 0-dim torch tensors (ScriptMLP, its leaves tensors): same structure,
    same initialization order, same math (a neuron is sum(w_i * x_i, start=b), then relu), so
    after random.seed(s) it holds micrograd's parameters."""

    def param(x: float) -> Any:
        return torch.tensor(float(x), dtype=torch.float64, requires_grad=True)

    def mlp(nin: int, nouts: list[int]) -> ScriptMLP:
        return ScriptMLP(param, nin, nouts, cleared_grad=None)  # (a tensor's grad: not the int 0)

    return types.SimpleNamespace(MLP=mlp)


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
                 release: Optional[Callable[[], None]] = None, warm_up: bool = False) -> None:
        self.workload, self.engine, self.count = workload, engine, count
        self.warm_up = warm_up
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
        if self.warm_up:
            # a loop of a few microseconds over data that a training step has just touched:
            # one untimed pass first, or the round times the caches as the previous engine's
            # round left them (after torch's: 2-3x on these rows)
            self.run()
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
        """Seconds of one run -> the workload's unit (ns, µs or ms per op, node, step ...)."""
        return seconds * _SCALE[self.unit.split("/", 1)[0]] / self.count


_SCALE = {"ns": 1e9, "µs": 1e6, "ms": 1e3}


def make_case(workload: str, engine: Engine, size: str | dict[str, Any],
              verify: bool = True) -> Case:
    """The Case of a timed workload (one of TIMED) for an engine.

    Raises WorkloadUnavailable when the workload cannot run on this engine here. verify=False
    skips the demo's extra forward pass (the loss before training, which check() reports so the
    suite can compare engines with the reference); the command line does without it."""
    sizes = SIZES[size] if isinstance(size, str) else size
    try:
        build = _BUILDERS[workload]
    except KeyError:
        raise ValueError(f"{workload!r} is not a timed workload ({', '.join(TIMED)})") from None
    return build(engine, sizes, verify)


# the workloads whose numbers have no closed form, and the keys of their check() that must
# equal the reference engine's: a loss and its gradients, or a training step's loss before and
# after the first update (which gradients and the update decide)
COMPARED = {
    "backward-mlp": ("loss", "grad_sq_sum"),
    "demo-step": ("first_step_loss", "second_step_loss"),
    "demo-step-replayed": ("first_step_loss", "second_step_loss"),
    "demo-step-own-nn": ("first_step_loss", "second_step_loss"),
    "digits-step": ("first_step_loss", "second_step_loss"),
    "custom-op-step": ("first_step_loss", "second_step_loss"),
}
_reference_cache: dict[tuple[str, str], Result] = {}


def reference_values(workload: str, sizes: dict[str, Any]) -> Result:
    """The COMPARED values of a workload as the reference engine computes them (two rounds of
    its own case, untimed; cached)."""
    key = (workload, json.dumps(sizes, sort_keys=True, default=str))
    if key not in _reference_cache:
        case = make_case(workload, load_engine("reference"), sizes, verify=False)
        for _ in range(2):
            case.setup()
            case.run()
        result = case.check()
        case.release()
        _reference_cache[key] = {k: result[k] for k in COMPARED[workload]}
    return _reference_cache[key]


def wrong_results(workload: str, result: Result, sizes: dict[str, Any]) -> list[str]:
    """What is wrong with what an engine computed in a timed workload (its check() result): []
    when it computed what the workload must. Closed forms where there are some; otherwise the
    reference engine's numbers. The command line and the pytest suite both ask this, so an
    engine that computes something else is reported instead of timed."""
    r = result
    wrong: list[str] = []

    def want(ok: bool, what: str) -> None:
        if not ok:
            wrong.append(what)

    def close(a: float, b: float, rel: float = 1e-9) -> bool:
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)

    if workload == "binary-op":
        want(close(r["data"], r["expected"], 1e-12), f"x is {r['data']!r}, not {r['expected']!r}")
        want(r["recorded"], "the operators recorded no graph")
    elif workload.startswith("leaf"):
        want(r["data_ok"], "a leaf does not hold the number it was given")
        want(r["grads"] == [0.0], f"new leaves' grads are {r['grads']}, not [0.0]")
    elif workload == "backward-layered":
        want(r["leaf_grads"] == [1.0], f"leaf grads {r['leaf_grads']}, not [1.0]")
        want(close(r["h_grad"], r["h_grad_expected"]), f"h.grad {r['h_grad']!r}, "
             f"not {r['h_grad_expected']!r}")
    elif workload == "backward-tree":
        want(r["grad_mismatches"] == 0, f"{r['grad_mismatches']} leaf grads wrong")
    elif workload == "backward-chain":
        want(r["data"] == r["data_expected"], f"x is {r['data']!r}, not {r['data_expected']!r}")
        want(r["b_grad"] == r["b_grad_expected"], f"b.grad {r['b_grad']!r}, "
             f"not {r['b_grad_expected']!r}")
        want(close(r["a_grad"], r["a_grad_expected"], 1e-12), f"a.grad {r['a_grad']!r}, "
             f"not {r['a_grad_expected']!r}")
    elif workload == "backward-fanout":
        want(r["w_grads"] == [r["x_data"]], f"w grads {r['w_grads']}, not [{r['x_data']!r}]")
        want(close(r["x_grad"], r["x_grad_expected"]), f"x.grad {r['x_grad']!r}, "
             f"not {r['x_grad_expected']!r}")
    elif workload == "teardown":
        want(r["freed"], "the graph's Values are still alive")
        want(r["arena_back"], "the arena kept nodes of the graph")
    elif workload == "param-loop":
        want(r["exact_mismatches"] == 0, f"{r['exact_mismatches']} parameters not updated exactly")
    elif workload == "optimizer-step":
        want(r["max_rel_err"] <= 1e-12, f"parameters off by {r['max_rel_err']:.3g} (relative)")
    elif workload == "zero-grad":
        want(r["nonzero_grads"] == 0, f"{r['nonzero_grads']} grads not zeroed")
    if workload in COMPARED:  # (the callers run these at least twice: a second step's loss)
        expected = reference_values(workload, sizes)
        for key in COMPARED[workload]:
            if r.get(key) is None:
                wrong.append(f"no {key} reported")
            else:
                want(close(r[key], expected[key]), f"{key} {r[key]!r}, the reference engine's "
                     f"{expected[key]!r}")
    return wrong


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
        return dict(data=float(kept[-1].data), expected=binary_op_expected(steps),
                    recorded=_recorded(kept[-1]))

    return Case("binary-op", engine, 2 * steps, None, run, check, extra=dict(steps=steps),
                release=kept.clear)


# ---- leaves ----

LEAF_ROW = 64  # floats per row of leaf-map: an input row of a 64-feature model (8x8 digits)


def _leaf_case(workload: str, engine: Engine, n: int) -> Case:
    """leaf: `Value(x)` in a loop; leaf-map: `list(map(Value, row))` per 64-float row;
    leaf-numpy: `Value(np.float64(x))`. Each leaf is made and dropped inside the timed region
    (the last one is kept for check())."""
    Value = engine.Value
    rng = random.Random(n)
    n -= n % LEAF_ROW
    xs = [rng.uniform(-1, 1) for _ in range(n)]
    inputs: list[Any] = xs
    if workload == "leaf-numpy":
        try:
            import numpy as np
        except ImportError:
            raise WorkloadUnavailable("numpy is not installed") from None
        inputs = [np.float64(x) for x in xs]
    rows = [xs[i:i + LEAF_ROW] for i in range(0, n, LEAF_ROW)]
    kept: list[Any] = []  # the last leaf (or row): check() reads it, release() drops it

    def run_map() -> None:
        for row in rows:
            leaves = list(map(Value, row))
        kept.append(leaves)

    def run_calls() -> None:
        for x in inputs:
            v = Value(x)
        kept.append(v)

    def check() -> Result:
        last = kept[-1] if workload == "leaf-map" else [kept[-1]]
        expected = rows[-1] if workload == "leaf-map" else [xs[-1]]
        return dict(data_ok=[float(v.data) for v in last] == expected,
                    grads=sorted({engine.grad_of(v) for v in last}))

    run = run_map if workload == "leaf-map" else run_calls
    return Case(workload, engine, n, None, run, check, extra=dict(leaves=n),
                release=kept.clear)


# ---- backward, one graph shape per row (each round: a fresh graph built in setup) ----


def _balanced_sum(xs: list[Any]) -> Any:
    """xs added pairwise, level by level: depth log2(len(xs)), not len(xs)."""
    while len(xs) > 1:
        pairs = [xs[i] + xs[i + 1] for i in range(0, len(xs) - 1, 2)]
        xs = pairs + ([xs[-1]] if len(xs) % 2 else [])
    return xs[0]


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
    nodes = width + 1 + 2 * width * layers + (width - 1)
    return _balanced_sum(xs), leaves, h, nodes


def build_tree_graph(engine: Engine, n: int) -> tuple[Any, list[Any], int]:
    """A balanced tree over n leaves (a multiple of 4): products of pairs, products of those
    pairs, then a balanced sum. For each group (a, b, c, d): d out / d a = b * (c * d),
    d out / d c = d * (a * b), and so on -- one contribution per leaf, so every engine gets
    those floats exactly. Returns (out, leaves, node_count)."""
    Value = engine.Value
    rng = random.Random(n)
    leaves = [Value(rng.uniform(-1, 1)) for _ in range(n)]
    pairs = [leaves[i] * leaves[i + 1] for i in range(0, n, 2)]
    quads = [pairs[i] * pairs[i + 1] for i in range(0, len(pairs), 2)]
    nodes = n + n // 2 + n // 4 + (n // 4 - 1)
    return _balanced_sum(quads), leaves, nodes


def tree_grads_expected(data: Sequence[float]) -> list[float]:
    """The leaf gradients of build_tree_graph's graph over leaves with these values."""
    grads: list[float] = []
    for i in range(0, len(data), 4):
        a, b, c, d = data[i:i + 4]
        grads += [b * (c * d), a * (c * d), d * (a * b), c * (a * b)]
    return grads


def build_fanout_graph(engine: Engine, n: int) -> tuple[Any, Any, list[Any], int]:
    """One leaf x used by every product x * w_i (n fresh leaves w_i), then a balanced sum:
    x has n parents, so its gradient is n contributions into one place. d out / d w_i = x
    exactly, d out / d x = sum(w). Returns (out, x, ws, node_count)."""
    Value = engine.Value
    rng = random.Random(n)
    x = Value(0.75)
    ws = [Value(rng.uniform(-1, 1)) for _ in range(n)]
    nodes = 1 + n + n + (n - 1)
    return _balanced_sum([x * w for w in ws]), x, ws, nodes


def build_chain_graph(engine: Engine, steps: int) -> tuple[Any, Any, Any, int]:
    """The chain x = x * a + b (x0 = 1, a = 0.5, b = 0.25), `steps` times: depth 2 * steps.
    Returns (out, a, b, node_count)."""
    Value = engine.Value
    a, b = Value(0.5), Value(0.25)
    x = Value(1.0)
    for _ in range(steps):
        x = x * a + b
    return x, a, b, 2 * steps + 3


def chain_grads_expected(steps: int) -> tuple[float, float]:
    """(d out / d a, d out / d b) of build_chain_graph's chain, summed top-down (the only order
    a chain allows, so every engine adds the same floats in the same order)."""
    xs = [1.0]
    for _ in range(steps - 1):
        xs.append(xs[-1] * 0.5 + 0.25)
    ga = gb = 0.0
    g = 1.0  # d out / d x_k, from the top
    for k in range(steps - 1, -1, -1):
        gb += g
        ga += xs[k] * g
        g = 0.5 * g
    return ga, gb


# bytes of C stack for upstream micrograd's recursive topological sort (one nested Python call
# per node of depth; reserved address space, touched only as deep as the recursion goes)
DEEP_STACK = 512 * 2**20


def call_deep(fn: Callable[[], None], depth: int) -> None:
    """fn() in a thread whose stack and recursion limit fit `depth` nested Python calls.

    Upstream micrograd's backward() sorts the graph recursively, so as users run it a chain
    deeper than ~1,000 nodes is a RecursionError (see deepest-chain); this is how it can run
    the backward-chain row at all. The limit is restored afterwards."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)

    old_limit = sys.getrecursionlimit()
    old_stack = threading.stack_size(DEEP_STACK)
    sys.setrecursionlimit(max(old_limit, depth + 1_000))
    try:
        thread = threading.Thread(target=target, name="deep-backward")
        thread.start()
        thread.join()
    finally:
        threading.stack_size(old_stack)
        sys.setrecursionlimit(old_limit)
    if errors:
        raise errors[0]


def _graph_case(workload: str, engine: Engine, nodes: int, build: Callable[[], Result],
                check: Callable[[Result], Result], extra: Result, depth: int = 0) -> Case:
    """A backward Case: setup() builds a fresh graph (build() returns a dict with its output
    under "out"), run() calls out.backward(), check(graph) reports what it computed. depth: the
    graph's depth, when upstream's recursive backward() needs call_deep for it."""
    graph: Result = {}  # this round's graph; released before setup() builds the next

    def setup() -> None:
        graph.update(build())

    def run() -> None:
        graph["out"].backward()

    def run_deep() -> None:
        call_deep(graph["out"].backward, depth)

    deep = depth > 500 and engine.recursive
    if deep:
        extra = dict(extra, deep_thread=f"recursion limit {depth + 1_000:,}, "
                     f"{DEEP_STACK >> 20} MiB stack")
    return Case(workload, engine, nodes, setup, run_deep if deep else run,
                lambda: check(graph), extra=extra, release=graph.clear)


def _backward_layered_case(engine: Engine, width: int, layers: int) -> Case:
    nodes = width + 1 + 2 * width * layers + (width - 1)

    def build() -> Result:
        out, leaves, h, _ = build_backward_graph(engine, width, layers)
        return dict(out=out, leaves=leaves, h=h)

    def check(graph: Result) -> Result:
        leaves, h = graph["leaves"], graph["h"]
        total = sum(float(v.data) for v in leaves)
        return dict(leaf_grads=sorted({engine.grad_of(v) for v in leaves}),
                    h_grad=engine.grad_of(h), h_grad_expected=2 * layers * total)

    return _graph_case("backward-layered", engine, nodes, build, check,
                       dict(width=width, layers=layers))


def _grad_mismatches(engine: Engine, leaves: Sequence[Any], expected: Sequence[float]) -> int:
    return sum(not math.isclose(engine.grad_of(v), e, rel_tol=1e-12, abs_tol=1e-300)
               for v, e in zip(leaves, expected))


def _backward_tree_case(engine: Engine, n: int) -> Case:
    nodes = n + n // 2 + n // 4 + (n // 4 - 1)

    def build() -> Result:
        out, leaves, _ = build_tree_graph(engine, n)
        return dict(out=out, leaves=leaves)

    def check(graph: Result) -> Result:
        leaves = graph["leaves"]
        expected = tree_grads_expected([float(v.data) for v in leaves])
        return dict(leaves=len(leaves), grad_mismatches=_grad_mismatches(engine, leaves, expected))

    return _graph_case("backward-tree", engine, nodes, build, check, dict(leaves=n))


def _backward_chain_case(engine: Engine, chain_nodes: dict[str, int]) -> Case:
    steps = chain_nodes[engine.kind] // 2
    nodes = 2 * steps + 3

    def build() -> Result:
        out, a, b, _ = build_chain_graph(engine, steps)
        return dict(out=out, a=a, b=b)

    def check(graph: Result) -> Result:
        ga, gb = chain_grads_expected(steps)
        return dict(data=float(graph["out"].data), data_expected=binary_op_expected(steps),
                    a_grad=engine.grad_of(graph["a"]), a_grad_expected=ga,
                    b_grad=engine.grad_of(graph["b"]), b_grad_expected=gb)

    return _graph_case("backward-chain", engine, nodes, build, check, dict(nodes=nodes),
                       depth=nodes)


def _backward_fanout_case(engine: Engine, n: int) -> Case:
    nodes = 1 + n + n + (n - 1)

    def build() -> Result:
        out, x, ws, _ = build_fanout_graph(engine, n)
        return dict(out=out, x=x, ws=ws)

    def check(graph: Result) -> Result:
        ws = graph["ws"]
        return dict(w_grads=sorted({engine.grad_of(w) for w in ws}),
                    x_data=float(graph["x"].data), x_grad=engine.grad_of(graph["x"]),
                    x_grad_expected=math.fsum(float(w.data) for w in ws))

    return _graph_case("backward-fanout", engine, nodes, build, check, dict(fanout=n))


def _second(losses: list[float]) -> Optional[float]:
    """A training step's second round's loss: the first after an update (None: one round)."""
    return float(losses[1]) if len(losses) > 1 else None


def _recorded(v: Any) -> bool:
    """Whether v was made by an operator that recorded it in a graph (two children)."""
    if hasattr(v, "_prev"):
        return len(v._prev) == 2
    return getattr(v, "grad_fn", None) is not None  # (torch)


def _children(engine: Engine, v: Any) -> list[Any]:
    """v's children as Python objects, where asking for them does not change the graph: not on
    the compiled engine (its inner nodes get a Python object only when asked) nor on torch."""
    if engine.kind == "compiled" or not hasattr(v, "_prev"):
        return []
    return list(v._prev)


def _arena_live(engine: Engine) -> int:
    """The compiled arena's live nodes (0 for the other engines)."""
    if engine.kind != "compiled":
        return 0
    from . import engine as selector

    return int(selector._load_compiled().arena_stats()["live"])


def _demo_model(engine: Engine) -> Any:
    """The demo's MLP(2, [16, 16, 1]), 337 parameters, micrograd's weights for seed 1337."""
    random.seed(1337)
    return engine.nn.MLP(2, [16, 16, 1])


def _backward_mlp_case(engine: Engine, points: int) -> Case:
    X, y = demo.make_moons(n_samples=points, seed=1337)

    def build() -> Result:
        model = _demo_model(engine)  # fresh parameters: their grads start at 0 every round
        loss, _ = demo.svm_loss(model, X, y, engine.const)
        return dict(out=loss, params=model.parameters())

    def check(graph: Result) -> Result:
        params = graph["params"]
        return dict(loss=float(graph["out"].data), parameters=len(params),
                    grad_sq_sum=math.fsum(engine.grad_of(p) ** 2 for p in params))

    return _graph_case("backward-mlp", engine, 1, build, check, dict(points=points))


# ---- training steps ----


def _demo_case(engine: Engine, points: int, verify: bool = True,
               workload: str = "demo-step", model: Any = None) -> Case:
    X, y = demo.make_moons(n_samples=points, seed=1337)
    model = model if model is not None else _demo_model(engine)
    Value = engine.const
    first_loss = None
    if verify:  # the loss before any step: the same on every engine (same seed, same weights)
        first_loss = float(demo.svm_loss(model, X, y, Value)[0].data)
    losses: list[float] = []  # every round's loss (the first one is the loss before training)
    steps = 100  # the demo's learning-rate schedule; rounds past 100 keep the last rate

    def run() -> None:
        k = min(len(losses), steps - 1)
        losses.append(demo.train_step(model, X, y, Value, k, steps)[0])

    def check() -> Result:
        return dict(first_loss=first_loss, first_step_loss=float(losses[0]),
                    second_step_loss=_second(losses),
                    last_loss=float(losses[-1]), parameters=len(model.parameters()))

    return Case(workload, engine, 1, None, run, check, extra=dict(points=points))


def _demo_own_nn_case(engine: Engine, points: int, verify: bool) -> Case:
    """demo-step with the script's own copy of micrograd's nn.py (ScriptMLP) over the engine's
    Value: what a lecture-style script that only swaps its Value import gets. For upstream this
    is its own nn; torch's demo-step is this structure already."""
    if engine.name == "torch":
        raise WorkloadUnavailable("torch's demo-step row is micrograd's nn structure already "
                                  "(and p.grad = 0 does not take on a tensor)")
    random.seed(1337)
    model = ScriptMLP(engine.Value, 2, [16, 16, 1])
    case = _demo_case(engine, points, verify, workload="demo-step-own-nn", model=model)
    case.extra["nn"] = "the script's own copy of micrograd's nn.py"
    return case


def _fast_module(name: str) -> Any:
    """micrograd_fast.<name> when it exists (an API other work adds), else None."""
    import importlib

    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.{name}":
            raise
        return None


def _replay_missing() -> Optional[str]:
    """Why demo-step-replayed cannot run here, or None when it can."""
    try:
        fast = load_engine("fast")
    except EngineUnavailable as exc:
        return str(exc)
    if not hasattr(fast.Value, "recompute"):
        return "micrograd_fast.engine.Value has no recompute() yet"
    if _fast_module("optim") is None:
        return "micrograd_fast.optim does not exist yet"
    return None


def _demo_replayed_case(engine: Engine, points: int, verify: bool) -> Case:
    """The compiled engine re-evaluates one retained demo graph per step (recompute, zero_grad,
    backward, optimizer step: no Python per node); every other engine runs its eager step, as
    demo-step, so the ratios read 'replayed vs eager'."""
    reason = _replay_missing()
    if reason is not None:
        raise WorkloadUnavailable(reason)
    if engine.kind != "compiled":
        case = _demo_case(engine, points, verify, workload="demo-step-replayed")
        case.extra["mode"] = "eager"
        return case
    X, y = demo.make_moons(n_samples=points, seed=1337)
    model = _demo_model(engine)
    loss, _ = demo.svm_loss(model, X, y, engine.const)
    params = model.parameters()
    opt = _fast_module("optim").SGD(params, lr=1.0)  # the demo's first rate

    def zero_grad() -> None:
        for p in params:
            p.grad = 0

    opt_zero_grad = getattr(opt, "zero_grad", zero_grad)
    losses: list[float] = []

    def run() -> None:
        loss.recompute()
        opt_zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.data)

    def check() -> Result:
        # the first recompute() sees the untrained weights: the demo's loss before training
        return dict(first_step_loss=float(losses[0]), second_step_loss=_second(losses),
                    last_loss=float(losses[-1]),
                    parameters=len(params))

    return Case("demo-step-replayed", engine, 1, None, run, check,
                extra=dict(points=points, mode="replayed"))


DIGITS_SIZES = [32, 10]  # MLP(64, DIGITS_SIZES): 64 * 32 + 32 + 32 * 10 + 10 = 2,410 parameters
DIGITS_LR = 0.05


@functools.lru_cache(maxsize=1)
def load_digits_scaled() -> tuple[list[list[float]], list[int]]:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), pixels scaled to [0, 1].
    Loaded once (the lists are shared: do not modify them)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise WorkloadUnavailable(f"scikit-learn does not import ({exc}): "
                                  "pip install 'micrograd_fast[bench]'") from None
    digits = load_digits()
    return (digits.data / 16.0).tolist(), digits.target.tolist()


def multiclass_hinge_loss(model: Any, X: Sequence[Sequence[float]], y: Sequence[int],
                          Value: Any, alpha: float = 1e-4) -> Any:
    """Multi-class SVM loss with relu only (so upstream micrograd runs it): per sample with
    scores s and label c, sum over j != c of relu(1 + s_j - s_c); the batch mean, plus
    alpha * L2 as the demo. The L2 term adds its 2,410 squares pairwise: as one sum() chain it
    would be deeper than upstream's recursive backward() can go."""
    losses = []
    for xrow, c in zip(X, y):
        losses.append(hinge_loss(model(list(map(Value, xrow))), c))
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * _balanced_sum([p * p for p in model.parameters()])
    return data_loss + reg_loss


def digits_train_step(model: Any, X: Sequence[Sequence[float]], y: Sequence[int], Value: Any,
                      lr: float = DIGITS_LR) -> float:
    """One minibatch step: forward + loss, zero_grad, backward, plain SGD. Returns the loss."""
    loss = multiclass_hinge_loss(model, X, y, Value)
    model.zero_grad()
    loss.backward()
    for p in model.parameters():
        p.data -= lr * p.grad
    return float(loss.data)


def _digits_case(engine: Engine, batch: int) -> Case:
    X, y = load_digits_scaled()
    order = list(range(len(X)))
    random.Random(1337).shuffle(order)
    batches = []  # the minibatches of the first rounds, cut outside the timed region
    for k in range(20):
        idx = [order[(k * batch + i) % len(order)] for i in range(batch)]
        batches.append(([X[i] for i in idx], [y[i] for i in idx]))
    random.seed(1337)
    model = engine.nn.MLP(64, DIGITS_SIZES)
    losses: list[float] = []  # every round's loss (the first: before any update)

    def run() -> None:
        Xb, yb = batches[len(losses) % len(batches)]
        losses.append(digits_train_step(model, Xb, yb, engine.const))

    def check() -> Result:
        return dict(first_step_loss=losses[0], second_step_loss=_second(losses),
                    last_loss=losses[-1],
                    parameters=len(model.parameters()))

    return Case("digits-step", engine, 1, None, run, check, extra=dict(batch=batch))


# ---- a script's own op: the lecture's hand-built tanh ----

# the micrograd lecture's data set and model: MLP(3, [4, 4, 1]), 41 parameters
LECTURE_XS = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
LECTURE_YS = [1.0, -1.0, -1.0, 1.0]
LECTURE_SIZES = [4, 4, 1]  # 3 * 4 + 4 + 4 * 4 + 4 + 4 + 1 = 41 parameters
LECTURE_LR = 0.05


def lecture_tanh(Value: Callable[..., Any]) -> Callable[[Any], Any]:
    """The lecture's tanh on the engine's Value class, built by hand as a user script builds its
    own op: the forward in Python floats, the node made with ``Value(t, (x,), 'tanh')``, and a
    Python ``_backward`` closure that backward() calls back into."""

    def tanh(x: Any) -> Any:
        t = (math.exp(2 * x.data) - 1) / (math.exp(2 * x.data) + 1)
        out = Value(t, (x,), "tanh")

        def _backward() -> None:
            x.grad += (1 - t ** 2) * out.grad

        out._backward = _backward
        return out

    return tanh


class LectureNeuron:
    """The lecture's neuron over engine Values: ``tanh(sum(w_i * x_i) + b)``, its tanh the
    hand-built op. Its weights, then its bias, are drawn from `rng` in [-1, 1]."""

    def __init__(self, Value: Callable[[float], Any], nin: int, rng: random.Random,
                 tanh: Callable[[Any], Any]) -> None:
        self.w = [Value(rng.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(rng.uniform(-1, 1))
        self.tanh = tanh

    def __call__(self, x: Sequence[Any]) -> Any:
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return self.tanh(act)

    def parameters(self) -> list[Any]:
        return self.w + [self.b]


class LectureLayer:
    """The lecture's layer: `nout` neurons over the same inputs (one output: not a list)."""

    def __init__(self, Value: Callable[[float], Any], nin: int, nout: int, rng: random.Random,
                 tanh: Callable[[Any], Any]) -> None:
        self.neurons = [LectureNeuron(Value, nin, rng, tanh) for _ in range(nout)]

    def __call__(self, x: Sequence[Any]) -> Any:
        outs = [n(x) for n in self.neurons]
        return outs[0] if len(outs) == 1 else outs

    def parameters(self) -> list[Any]:
        return [p for neuron in self.neurons for p in neuron.parameters()]


class LectureMLP:
    """The lecture's MLP (tanh on every layer, the last one too) as a script defines it: plain
    Python classes holding the engine's Values, not the engine's nn. Parameters come from
    `rng` in a fixed order: layer by layer, neuron by neuron, weights then bias."""

    def __init__(self, Value: Callable[..., Any], nin: int, nouts: list[int],
                 rng: random.Random) -> None:
        tanh = lecture_tanh(Value)
        sz = [nin] + nouts
        self.layers = [LectureLayer(Value, sz[i], sz[i + 1], rng, tanh)
                       for i in range(len(nouts))]

    def __call__(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Any]:
        return [p for layer in self.layers for p in layer.parameters()]


def custom_op_train_step(model: LectureMLP, xs: Sequence[Sequence[float]], ys: Sequence[float],
                         lr: float = LECTURE_LR) -> float:
    """One step of the lecture's training loop: forward on every sample (inputs as plain
    floats), squared-error loss, grads set to 0.0, backward, ``p.data += -lr * p.grad``.
    Returns the loss."""
    ypred = [model(x) for x in xs]
    loss = sum((yout - ygt) ** 2 for ygt, yout in zip(ys, ypred))
    params = model.parameters()
    for p in params:
        p.grad = 0.0
    loss.backward()
    for p in params:
        p.data += -lr * p.grad
    return float(loss.data)


def _custom_op_case(engine: Engine) -> Case:
    """The lecture's training step with its hand-built tanh: every neuron's activation is a
    Python ``_backward`` closure that the engine must call, so a compiled engine saves only on
    the arithmetic nodes around it. The step's graph is freed as each engine frees it (hand-built
    nodes are reference cycles through their closures), with the harness's gc settings."""
    if engine.kind == "torch":
        raise WorkloadUnavailable("a hand-built op is not possible on torch tensors (no "
                                  "Value(data, children, op) nor settable _backward: torch's "
                                  "way is a torch.autograd.Function)")
    model = LectureMLP(engine.Value, 3, LECTURE_SIZES, random.Random(1337))
    losses: list[float] = []  # every round's loss (the first: before any update)

    def run() -> None:
        losses.append(custom_op_train_step(model, LECTURE_XS, LECTURE_YS))

    def check() -> Result:
        return dict(first_step_loss=losses[0], second_step_loss=_second(losses),
                    last_loss=losses[-1],
                    parameters=len(model.parameters()))

    return Case("custom-op-step", engine, 1, None, run, check,
                extra=dict(samples=len(LECTURE_XS)))


# ---- parameter loops ----


def _param_setup(engine: Engine, params: Sequence[Any]) -> tuple[list[float], list[float]]:
    """The parameters' data now and fixed gradients in [-1, 1]: the state every round starts in."""
    rng = random.Random(len(params))
    return [float(p.data) for p in params], [rng.uniform(-1, 1) for _ in params]


def sgd_expected(data: Sequence[float], grads: Sequence[float], lr: float,
                 reps: int) -> list[float]:
    """Each parameter after `reps` plain SGD updates p.data -= lr * p.grad (grads fixed)."""
    out = []
    for d, g in zip(data, grads):
        for _ in range(reps):
            d -= lr * g
        out.append(d)
    return out


def _sgd_case(workload: str, engine: Engine, reps: int) -> Case:
    """param-loop: `for p in params: p.data -= lr * p.grad`, `reps` times per round;
    optimizer-step: micrograd_fast.optim.SGD.step() (torch: torch.optim.SGD) `reps` times,
    against the same loop on the engines without an optimizer."""
    model = _demo_model(engine)
    params = model.parameters()
    data, grads = _param_setup(engine, params)
    lr = 0.01
    step: Optional[Callable[[], Any]] = None
    if workload == "optimizer-step":
        optim = _fast_module("optim")
        if optim is None:
            raise WorkloadUnavailable("micrograd_fast.optim does not exist yet")
        if engine.kind == "compiled":
            step = optim.SGD(params, lr=lr).step
        elif engine.kind == "torch":
            import torch

            step = torch.optim.SGD(params, lr=lr).step

    def setup() -> None:
        for p, d, g in zip(params, data, grads):
            engine.set_param(p, d, g)

    def run_loop() -> None:
        for _ in range(reps):
            for p in params:
                p.data -= lr * p.grad

    def run_step() -> None:
        assert step is not None
        for _ in range(reps):
            step()

    def check() -> Result:
        expected = sgd_expected(data, grads, lr, reps)
        got = [float(p.data) for p in params]
        pairs = list(zip(got, expected))
        return dict(parameters=len(params), exact_mismatches=sum(a != b for a, b in pairs),
                    max_rel_err=max(abs(a - b) / max(abs(b), 1e-300) for a, b in pairs))

    count = reps if workload == "param-loop" else reps * len(params)
    return Case(workload, engine, count, setup, run_loop if step is None else run_step, check,
                extra=dict(parameters=len(params), reps=reps,
                           mode="loop" if step is None else "optimizer"), warm_up=True)


def _zero_grad_case(engine: Engine, reps: int) -> Case:
    """model.zero_grad() on the demo model, `reps` times per round (grads set to 1 in setup)."""
    model = _demo_model(engine)
    params = model.parameters()

    def setup() -> None:
        for p in params:
            engine.set_param(p, float(p.data), 1.0)

    def run() -> None:
        for _ in range(reps):
            model.zero_grad()

    def check() -> Result:
        return dict(parameters=len(params),
                    nonzero_grads=sum(engine.grad_of(p) != 0.0 for p in params))

    return Case("zero-grad", engine, reps, setup, run, check,
                extra=dict(parameters=len(params), reps=reps), warm_up=True)


# ---- teardown ----


def _teardown_case(engine: Engine, width: int, layers: int) -> Case:
    """Freeing a step's graph (backward_layered's graph, forward and backward done in setup):
    run() drops the one reference setup() handed over. Upstream's graphs are reference cycles
    that only the collector frees, so for upstream run() also calls gc.collect()."""
    nodes = width + 1 + 2 * width * layers + (width - 1)
    holder: Result = {}  # the graph's only reference, from setup() to run()
    probe: list[Any] = []  # a weak reference to the graph's output: freed or not

    live_before: list[int] = []  # the compiled arena's live nodes before the graph was built

    def setup() -> None:
        live_before[:] = [_arena_live(engine)]
        out, leaves, h, _ = build_backward_graph(engine, width, layers)
        out.backward()
        # the output, a leaf and the output's children (the compiled engine's inner nodes have
        # no Python object unless asked: its arena's count of live nodes says the rest)
        probe[:] = [weakref.ref(v) for v in [out, leaves[0], *_children(engine, out)]]
        holder["graph"] = (out, leaves, h)

    def run() -> None:
        holder.clear()
        if engine.cyclic:
            gc.collect()

    def check() -> Result:
        return dict(freed=bool(probe) and all(ref() is None for ref in probe),
                    # (<=: a collection during setup may free older, unrelated Values)
                    arena_back=_arena_live(engine) <= live_before[0], nodes=nodes)

    return Case("teardown", engine, nodes, setup, run, check,
                extra=dict(width=width, layers=layers,
                           freed_by="gc.collect()" if engine.cyclic else "reference counting"),
                release=holder.clear)


# workload -> builder(engine, sizes, verify): the Case of every timed workload
_BUILDERS: dict[str, Callable[[Engine, dict[str, Any], bool], Case]] = {
    "binary-op": lambda e, s, v: _binary_op_case(e, s["binop_steps"]),
    "leaf": lambda e, s, v: _leaf_case("leaf", e, s["leaves"]),
    "leaf-map": lambda e, s, v: _leaf_case("leaf-map", e, s["leaves"]),
    "leaf-numpy": lambda e, s, v: _leaf_case("leaf-numpy", e, s["leaves"]),
    "backward-layered": lambda e, s, v: _backward_layered_case(e, s["bw_width"], s["bw_layers"]),
    "backward-tree": lambda e, s, v: _backward_tree_case(e, s["tree_leaves"]),
    "backward-chain": lambda e, s, v: _backward_chain_case(e, s["chain_nodes"]),
    "backward-fanout": lambda e, s, v: _backward_fanout_case(e, s["fanout"]),
    "backward-mlp": lambda e, s, v: _backward_mlp_case(e, s["demo_points"]),
    "demo-step": lambda e, s, v: _demo_case(e, s["demo_points"], v),
    "demo-step-replayed": lambda e, s, v: _demo_replayed_case(e, s["demo_points"], v),
    "demo-step-own-nn": lambda e, s, v: _demo_own_nn_case(e, s["demo_points"], v),
    "digits-step": lambda e, s, v: _digits_case(e, s["digits_batch"]),
    "custom-op-step": lambda e, s, v: _custom_op_case(e),
    "param-loop": lambda e, s, v: _sgd_case("param-loop", e, s["reps"]),
    "zero-grad": lambda e, s, v: _zero_grad_case(e, s["reps"]),
    "optimizer-step": lambda e, s, v: _sgd_case("optimizer-step", e, s["reps"]),
    "teardown": lambda e, s, v: _teardown_case(e, s["bw_width"], s["bw_layers"]),
}
assert set(_BUILDERS) == set(TIMED), "every timed workload needs a builder"


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
MIN_ROUNDS = {"smoke": 2, "quick": 2, "default": 2, "full": 3}  # however long they take (two:
# a training step is checked after its first update too, see wrong_results)


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
    workloads = list(workloads)
    _preload(workloads)
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


def _preload(workloads: Sequence[str]) -> None:
    """Import what the workloads load lazily (numpy, scikit-learn and its data) before the heap
    is frozen: objects created later are seen by every collection, and scipy's alone would make
    each of upstream's gc.collect() calls tens of milliseconds slower."""
    if "leaf-numpy" in workloads:
        with contextlib.suppress(ImportError):
            import numpy  # noqa: F401
    if "digits-step" in workloads:
        with contextlib.suppress(WorkloadUnavailable):
            load_digits_scaled()


def _run_timed(workload: str, present: dict[str, Engine], sizes: dict[str, Any],
               rounds: dict[str, int], budget: float, min_rounds: int, entry: Result) -> None:
    cases: dict[str, Case] = {}
    for name, engine in present.items():
        try:
            cases[name] = make_case(workload, engine, sizes, verify=False)
        except WorkloadUnavailable as exc:
            entry.setdefault("skipped", {})[name] = str(exc)
        except Exception as exc:  # reported, not fatal: the other engines still count
            entry.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
    names = list(cases)
    runs: dict[str, list[float]] = {name: [] for name in names}
    spent = {name: 0.0 for name in names}
    checks: dict[str, Result] = {}
    for r in range(max(rounds[name] for name in names) if names else 0):
        # rounds interleave across engines, and the order turns every round: no engine always
        # runs right after the same one (say, after upstream's garbage-heavy rounds)
        for name in names[r % len(names):] + names[:r % len(names)]:
            case = cases.get(name)
            if case is None or r >= rounds[name] or (r >= min_rounds and spent[name] > budget):
                continue
            begin = time.perf_counter()
            try:
                case.setup()
                start = time.perf_counter()
                case.run()
                end = time.perf_counter()
                checks[name] = case.check()
            except Exception as exc:  # reported, not fatal: the other engines still count
                entry.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
                del cases[name]
                case.release()
                continue
            case.release()  # the next engine's timed region must not collect this graph
            spent[name] += time.perf_counter() - begin  # the budget counts the untimed parts too
            runs[name].append(case.per_unit(end - start))
    for name, case in cases.items():
        try:
            wrong = wrong_results(workload, checks[name], sizes)
        except Exception as exc:  # (the reference engine itself failed)
            wrong = [f"not checked: {type(exc).__name__}: {exc}"]
        if wrong:  # reported, not timed
            entry.setdefault("errors", {})[name] = "computed something else: " + "; ".join(wrong)
            entry.setdefault("wrong", []).append(name)
            continue
        entry["engines"][name] = dict(best=min(runs[name]), median=statistics.median(runs[name]),
                                      runs=runs[name], count=case.count,
                                      extra=dict(case.extra, **checks[name]))
        entry["count"] = case.count


def add_ratios(entry: Result) -> None:
    """ratios[baseline] = baseline's median / engine's median: how many times faster (or smaller)
    the engine is. Medians, not bests: the engines get different numbers of rounds (upstream's
    are slow), and the best of many rounds would flatter the engine that ran more. Not defined
    for deepest-chain (bigger is better there, and 0 happens)."""
    if entry["unit"] == "nodes":
        for result in entry["engines"].values():
            result["ratios"] = {}
        return
    for result in entry["engines"].values():
        result["ratios"] = {
            base: entry["engines"][base]["median"] / result["median"]
            for base in BASELINES
            if base in entry["engines"] and result["median"] > 0
        }


def format_table(report: Result) -> str:
    """The one table: workload x engine, best and median, and the ratios to the baselines."""
    m = report["machine"]
    engines = report["engines"]
    upstream_listed = engines.get("micrograd", {}).get("available", False)
    versions = ", ".join(f"{name} {info.get('version') or '?'}"
                         for name, info in engines.items()  # (gc off: upstream's version again)
                         if info["available"]
                         and not (name == "micrograd-gcoff" and upstream_listed))
    load = "" if not m.get("load_average") else f", load average {m['load_average'][0]:g}"
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, {m['implementation']} {m['python']} "
             f"({m['platform']}){load}",
             f"engines: {versions}; size {report['settings']['size']}"]
    missing = [f"{n} ({i['reason']})" for n, i in report["engines"].items() if not i["available"]]
    if missing:
        lines.append("skipped: " + "; ".join(missing))
    header = ["workload", "unit", "engine", "best", "median"] + [f"vs {b}" for b in BASELINES]
    rows: list[list[str]] = []
    notes: list[str] = []
    for workload, entry in report["results"].items():
        skipped = entry.get("skipped", {})
        if not entry["engines"]:  # ran nowhere: one line under the table, not a row per engine
            reasons = sorted(set(skipped.values()))
            if reasons:
                notes.append(f"{workload}: not run: {'; '.join(reasons)}")
            continue
        names = sorted(set(entry["engines"]) | set(skipped),
                       key=lambda n: ENGINES.index(n) if n in ENGINES else len(ENGINES))
        for name in names:
            result = entry["engines"].get(name)
            if result is None:
                rows.append([workload, entry["unit"], name, "n/a", "n/a"]
                            + ["-"] * len(BASELINES))
                notes.append(f"{workload} on {name}: n/a: {skipped[name]}")
                continue
            best, median = _num(result["best"]), _num(result["median"])
            if workload == "deepest-chain" and result["best"] == 0:
                best = median = "<1,000"  # failed on the shortest chain tried
            row = [workload, entry["unit"], name, best, median]
            for base in BASELINES:
                ratio = result["ratios"].get(base)
                row.append("-" if ratio is None else _ratio(ratio))
            rows.append(row)
        notes += _workload_notes(workload, entry)
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
    lines += ["", "ratios: baseline's median / engine's median (x times faster, or smaller for "
              "B/node); medians, as the engines ran different numbers of rounds"]
    lines += notes
    if "deepest-chain" in report["results"]:
        lines.append("deepest-chain: the longest chain (nodes, by decades from 10^3) that "
                     "backward() ran on; the search ended at:")
    for name, result in report["results"].get("deepest-chain", {}).get("engines", {}).items():
        lines.append(f"  {name}: {result['extra']['stopped']}")
    errors = [f"  {workload} on {name}: {error}" for workload, entry in report["results"].items()
              for name, error in entry.get("errors", {}).items()]
    if errors:
        lines += ["failed:"] + errors
    return "\n".join(lines)


# what a reader of the table must know about a row, printed under it when the workload ran
NOTES = {
    "backward-chain": "upstream micrograd's backward() recurses once per node of depth: it runs "
                      "this row in a thread with a raised recursion limit and a big stack (as "
                      "users run it, it fails past ~1,000 nodes: see deepest-chain)",
    "backward-mlp": "each engine's own graph of the demo's loss: micrograd_fast's nn makes "
                    "w·x + b one node where micrograd makes 2n",
    "demo-step-replayed": "micrograd_fast replays one retained graph (recompute, zero_grad, "
                          "backward, optimizer step); the other engines run their eager step",
    "demo-step-own-nn": "the demo step with the script's own copy of micrograd's nn.py over "
                        "each engine's Value (2n nodes per neuron, nothing fused): what a script "
                        "that swaps only its Value import gets; demo-step uses each engine's nn",
    "custom-op-step": "every neuron's tanh is a hand-built op (a Python _backward closure, the "
                      "lecture's way): the engine calls back into Python for each",
    "optimizer-step": "micrograd_fast.optim.SGD and torch.optim.SGD; the other engines run the "
                      "SGD loop of param-loop",
    "teardown": "upstream micrograd's graphs are reference cycles: its time is the "
                "gc.collect() that frees them",
}


def _workload_notes(workload: str, entry: Result) -> list[str]:
    notes = [f"{workload}: {NOTES[workload]}"] if workload in NOTES else []
    counts: dict[int, list[str]] = {}
    for name, result in entry["engines"].items():
        if "count" in result:
            counts.setdefault(result["count"], []).append(name)
    if len(counts) > 1:  # per-unit numbers over different sizes: say which
        what = entry["unit"].split("/", 1)[1] + "s"
        notes.append(f"{workload}: " + "; ".join(
            f"{count:,} {what} for {', '.join(names)}" for count, names in counts.items()))
    return notes


def plot_ratios(report: Result, path: str | os.PathLike[str],
                baseline: str = "micrograd-gcoff") -> None:
    """A PNG of every engine's ratio to `baseline` per workload (log scale, higher = better)."""
    plt = demo.pyplot()
    workloads = [w for w, e in report["results"].items()
                 if e["unit"] != "nodes" and baseline in e["engines"]]
    engines = [n for n in ENGINES if any(n in report["results"][w]["engines"] for w in workloads)]
    fig, ax = plt.subplots(figsize=(2.5 + 1.25 * len(workloads), 5.0))
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
        ax.bar_label(bars, labels=[_ratio(y) for y in ys], fontsize=6, padding=1,
                     rotation=90)
    ax.set_yscale("log")
    ax.axhline(1.0, color="k", linewidth=0.8)
    ax.set_xticks(range(len(workloads)),
                  [f"{w}\n({report['results'][w]['unit']})" for w in workloads], fontsize=8,
                  rotation=30, ha="right", rotation_mode="anchor")
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
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: under a minute with every engine (the default "
                        "sizes: about two minutes here)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--engines", nargs="+", metavar="ENGINE",
                        help=f"engines to run (default: all present of {', '.join(ENGINES)}); "
                        "comma-separated also works")
    parser.add_argument("--plot", metavar="PATH",
                        help="also save a PNG of the ratios to micrograd-gcoff (needs matplotlib)")
    parser.add_argument("--workloads", nargs="+", metavar="WORKLOAD",
                        help=f"workloads to run (default: all of {', '.join(WORKLOADS)}); "
                        + "; ".join(f"{g} = all {'/'.join(ws)}" for g, ws in GROUPS.items()))
    parser.add_argument("--size", choices=sorted(SIZES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    engines = _split(args.engines) or list(ENGINES)
    workloads = [w for name in _split(args.workloads) for w in GROUPS.get(name, (name,))]
    workloads = list(dict.fromkeys(workloads)) or list(WORKLOADS)  # in the order given
    for name in engines:
        if name not in ENGINES:
            parser.error(f"unknown engine {name!r} (choose from {', '.join(ENGINES)})")
    for name in workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r} (choose from {', '.join(WORKLOADS)})")
    from .demo import check_output_path, check_plot_path

    check_output_path(parser, "--json", args.json)  # before the run, not after it
    args.plot = check_plot_path(parser, args.plot)
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
    if not any(info["available"] for info in report["engines"].values()):
        print("no engine to run: none of those asked for is installed here", file=sys.stderr)
        return 1
    wrong = [f"{workload} on {name}" for workload, entry in report["results"].items()
             for name in entry.get("wrong", ())]
    if wrong:  # an engine that computes something else fails the run
        print(f"wrong results, not timed: {', '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


def _split(values: Optional[Sequence[str]]) -> list[str]:
    return [v for item in values or () for v in item.split(",") if v]


def _json_default(x: object) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


if __name__ == "__main__":
    sys.exit(main())
