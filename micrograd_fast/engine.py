"""Picks the engine: the compiled one, or the pure-Python reference when
MICROGRAD_FAST_PURE_PYTHON=1 (read here and nowhere else)."""
from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Literal


def _load_compiled() -> ModuleType:
    name = __package__ + "._engine"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        # Python started in a source checkout (`python -m micrograd_fast`, `python -m pytest`)
        # imports the checkout's micrograd_fast/, which holds the Python modules but not the
        # compiled module that `pip install .` put beside the installed copy. Let the package's
        # search path reach that copy too (pkgutil.extend_path scans sys.path for it); the
        # checkout's Python modules still come first.
        import pkgutil

        package = sys.modules[__package__]
        package.__path__ = pkgutil.extend_path(package.__path__, __package__)
        return importlib.import_module(name)


BACKEND: Literal["cython", "python"]  # which engine is active
if TYPE_CHECKING:
    # type checkers see the compiled engine's API (micrograd_fast/_engine.pyi); the reference
    # engine has the same one
    from ._engine import (Value, assign, cross_entropy, dot, enable_grad, is_grad_enabled, layer,
                          log_softmax, logsumexp, mlp, neuron_parameters, no_grad, softmax,
                          sum_values, zero_grad_neurons, zero_grads)
elif os.environ.get("MICROGRAD_FAST_PURE_PYTHON", "") not in ("", "0"):
    from .reference import (Value, assign, cross_entropy, dot, enable_grad, is_grad_enabled,
                            layer, log_softmax, logsumexp, mlp, neuron_parameters, no_grad,
                            softmax, sum_values, zero_grad_neurons, zero_grads)

    BACKEND = "python"
else:
    try:
        _compiled = _load_compiled()
    except ImportError as exc:  # never a silent, 100x slower fallback
        raise ImportError(
            "micrograd_fast's compiled engine (micrograd_fast._engine) is not built or does not load: "
            f"{exc}. Install the package with `pip install .` (it compiles the extension), or set "
            "MICROGRAD_FAST_PURE_PYTHON=1 to use the pure-Python reference engine."
        ) from exc
    Value, dot, layer, mlp, neuron_parameters, sum_values = (
        _compiled.Value, _compiled.dot, _compiled.layer, _compiled.mlp, _compiled.neuron_parameters,
        _compiled.sum_values)
    assign, zero_grads, zero_grad_neurons = (
        _compiled.assign, _compiled.zero_grads, _compiled.zero_grad_neurons)
    no_grad, enable_grad, is_grad_enabled = (
        _compiled.no_grad, _compiled.enable_grad, _compiled.is_grad_enabled)
    softmax, log_softmax, logsumexp, cross_entropy = (
        _compiled.softmax, _compiled.log_softmax, _compiled.logsumexp, _compiled.cross_entropy)
    BACKEND = "cython"

__all__ = ["BACKEND", "Value", "assign", "cross_entropy", "dot", "enable_grad", "is_grad_enabled",
           "layer", "log_softmax", "logsumexp", "mlp", "neuron_parameters", "no_grad", "softmax",
           "sum_values", "zero_grad_neurons", "zero_grads"]
