"""micrograd_fast: micrograd's API and numbers, compiled -- fast, deep graphs, tools around it.

    from micrograd_fast.engine import Value   # instead of: from micrograd.engine import Value
    from micrograd_fast.nn import MLP         # instead of: from micrograd.nn import MLP
"""
__version__ = "0.1.0"

from .engine import (BACKEND, Value, assign, cross_entropy, dot, enable_grad,  # noqa: E402
                     is_grad_enabled, log_softmax, logsumexp, no_grad, softmax, sum_values,
                     zero_grads)
from .checks import gradcheck  # noqa: E402
from .dropin import install_as_micrograd, uninstall_as_micrograd  # noqa: E402
from .viz import draw_dot  # noqa: E402

from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from . import optim  # noqa: F401  (at run time: on first use, see __getattr__)

__all__ = [
    "BACKEND", "Value", "dot", "sum_values", "softmax", "log_softmax", "logsumexp",
    "cross_entropy", "draw_dot", "gradcheck",
    "assign", "zero_grads", "no_grad", "enable_grad", "is_grad_enabled", "optim",
    "install_as_micrograd", "uninstall_as_micrograd", "__version__",
]


def __getattr__(name: str) -> object:
    # micrograd_fast.optim on first use: `import micrograd_fast` stays as light as before
    if name == "optim":
        import importlib

        return importlib.import_module(".optim", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- IPython extension: `%load_ext micrograd_fast` / `%unload_ext micrograd_fast` ----

def load_ipython_extension(ipython: object) -> None:
    """`%load_ext micrograd_fast`: from here on this kernel's `import micrograd...` (any form)
    gets micrograd_fast (install_as_micrograd). Loading again is harmless."""
    install_as_micrograd()


def unload_ipython_extension(ipython: object) -> None:
    """`%unload_ext micrograd_fast`: sys.modules as before the load (upstream micrograd back)."""
    uninstall_as_micrograd()
