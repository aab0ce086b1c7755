"""micrograd_fast: micrograd's API and numbers, compiled -- fast, deep graphs, tools around it.

    from micrograd_fast.engine import Value   # instead of: from micrograd.engine import Value
    from micrograd_fast.nn import MLP         # instead of: from micrograd.nn import MLP
"""
__version__ = "0.1.0"

from .engine import (BACKEND, Value, cross_entropy, dot, log_softmax, logsumexp,  # noqa: E402
                     softmax, sum_values)
from .checks import gradcheck  # noqa: E402
from .dropin import install_as_micrograd, uninstall_as_micrograd  # noqa: E402
from .viz import draw_dot  # noqa: E402

__all__ = [
    "BACKEND", "Value", "dot", "sum_values", "softmax", "log_softmax", "logsumexp",
    "cross_entropy", "draw_dot", "gradcheck",
    "install_as_micrograd", "uninstall_as_micrograd", "__version__",
]
