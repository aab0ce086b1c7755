"""Every engine test runs on both engines: `engine` is parametrized as [c] (compiled) and [py]
(the pure-Python reference), as multidict's conftest does for its C and Python implementations."""
import os
import types

import pytest

import micrograd_fast.engine
import micrograd_fast.nn
import micrograd_fast.reference

PURE = os.environ.get("MICROGRAD_FAST_PURE_PYTHON", "") not in ("", "0")


def _compiled():
    try:
        return micrograd_fast.engine._load_compiled()
    except ImportError:
        if PURE:  # pure-Python mode may run without the extension
            pytest.skip("compiled engine not built (MICROGRAD_FAST_PURE_PYTHON=1)")
        raise  # otherwise a missing extension is an error, never a silent skip


def _bundle(name, module):
    return types.SimpleNamespace(
        name=name,
        module=module,
        Value=module.Value,
        dot=module.dot,
        sum_values=module.sum_values,
        nn=micrograd_fast.nn.over(module),
        # arena statistics exist only in the compiled engine
        arena_stats=getattr(module, "arena_stats", None),
    )


_cache = {}


@pytest.fixture(params=["c", "py"], scope="session")
def engine(request):
    """The engine under test: .Value, .dot, .sum_values, .nn (Module/Neuron/Layer/MLP over it)."""
    if request.param not in _cache:
        module = _compiled() if request.param == "c" else micrograd_fast.reference
        _cache[request.param] = _bundle(request.param, module)
    return _cache[request.param]


@pytest.fixture(scope="session")
def c_engine():
    """The compiled engine alone, for tests of its internals (arena statistics)."""
    return _bundle("c", _compiled())


@pytest.fixture(scope="session")
def ref():
    """The reference engine, as the oracle in differential tests."""
    return _bundle("py", micrograd_fast.reference)


@pytest.fixture(autouse=True)
def _arena_stays_consistent():
    """After every test, the compiled arena must still hold together (a cheap full check)."""
    yield
    if not PURE:
        micrograd_fast.engine._load_compiled()._check_arena()
