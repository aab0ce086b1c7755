"""Picks the engine: the compiled one, or the pure-Python reference when
MICROGRAD_FAST_PURE_PYTHON=1 (read here and nowhere else)."""
import os

if os.environ.get("MICROGRAD_FAST_PURE_PYTHON", "") not in ("", "0"):
    from .reference import Value, dot, sum_values

    BACKEND = "python"
else:
    try:
        from ._engine import Value, dot, sum_values
    except ImportError as exc:  # never a silent, 100x slower fallback
        raise ImportError(
            "micrograd_fast's compiled engine (micrograd_fast._engine) is not built or does not load: "
            f"{exc}. Install the package with `pip install .` (it compiles the extension), or set "
            "MICROGRAD_FAST_PURE_PYTHON=1 to use the pure-Python reference engine."
        ) from exc

    BACKEND = "cython"

__all__ = ["BACKEND", "Value", "dot", "sum_values"]
