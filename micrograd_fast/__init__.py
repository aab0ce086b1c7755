"""micrograd_fast: micrograd's API and numbers, compiled -- fast, deep graphs, tools around it.

    from micrograd_fast.engine import Value   # instead of: from micrograd.engine import Value
    from micrograd_fast.nn import MLP         # instead of: from micrograd.nn import MLP
"""
__version__ = "0.1.0"

from .engine import BACKEND, Value, dot, sum_values  # noqa: E402
from .checks import gradcheck  # noqa: E402
from .dropin import install_as_micrograd, uninstall_as_micrograd  # noqa: E402
from .viz import draw_dot  # noqa: E402

__all__ = [
    "BACKEND", "Value", "dot", "sum_values", "draw_dot", "gradcheck",
    "install_as_micrograd", "uninstall_as_micrograd", "__version__",
]


# ---- IPython extension: `%load_ext micrograd_fast` / `%unload_ext micrograd_fast` ----

def load_ipython_extension(ipython: object) -> None:
    """`%load_ext micrograd_fast`: from here on this kernel's `import micrograd...` (any form)
    gets micrograd_fast (install_as_micrograd). Loading again is harmless."""
    install_as_micrograd()


def unload_ipython_extension(ipython: object) -> None:
    """`%unload_ext micrograd_fast`: sys.modules as before the load (upstream micrograd back)."""
    uninstall_as_micrograd()
