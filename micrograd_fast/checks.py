"""gradcheck: backward's gradients against central finite differences.

The lecture's first lesson, automated: the derivative of f at x is about (f(x+h) - f(x-h)) / 2h,
so a correct backward() must agree with it. Like torch.autograd.gradcheck, it returns True or
raises (GradcheckError, a RuntimeError) -- or returns False with raise_exception=False.

    from micrograd_fast import gradcheck
    gradcheck(lambda x, y: (x * y + y**3).tanh(), [0.3, -0.7])   # True

Near a kink (relu at 0) or where f is not differentiable, the two disagree by nature; check
such functions away from those points.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["GradcheckError", "gradcheck"]


class GradcheckError(RuntimeError):
    """backward's gradient and the finite-difference one disagree.

    .mismatches: a list of (output index, input index, analytic, numeric) for every failing pair;
    .input_index / .analytic / .numeric describe the first of them.
    """

    def __init__(self, message: str, mismatches: list[tuple[int, int, float, float]]) -> None:
        super().__init__(message)
        self.mismatches = mismatches
        _, self.input_index, self.analytic, self.numeric = mismatches[0]


def _is_value(x: object) -> bool:
    # duck typing: any engine's Value (ours, the reference, upstream micrograd, a subclass)
    return hasattr(x, "data") and hasattr(x, "grad") and hasattr(x, "backward")


def _outputs(result: Any, many: bool) -> list[Any]:
    """f's result as a list of Values (f may return one Value or a list/tuple of them)."""
    outs = list(result) if many else [result]
    for out in outs:
        if not _is_value(out):
            raise TypeError(f"gradcheck: f must return a Value (or a list of Values), "
                            f"not {type(out).__name__!r}")
    return outs


def gradcheck(f: Callable[..., Any], inputs: Any, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """Check f's gradients by central finite differences; True if they agree.

    f: a function of Values returning a Value (or a list/tuple of Values, each checked).
    inputs: the point to check at -- numbers or Values (a single one or a sequence). f always
        gets fresh leaf Values holding those numbers, so the inputs' own .grad is left alone.
        Numbers become Values of the class of the first Value given (ours by default).
    eps: the step h; atol, rtol: analytic a and numeric n agree when |a - n| <= atol + rtol*|n|
        (torch.allclose's rule; NaN never agrees).
    raise_exception: on disagreement raise GradcheckError naming the input index and both
        values (True, the default) or return False.
    """
    if _is_value(inputs) or not hasattr(inputs, "__iter__"):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise ValueError("gradcheck: no inputs")
    values = [x for x in inputs if _is_value(x)]
    make: Callable[[float], Any]
    if values:
        make = type(values[0])
    else:
        from .engine import Value

        make = Value
    point = [float(x.data) if _is_value(x) else float(x) for x in inputs]

    def call(xs: list[float]) -> tuple[list[Any], Any]:
        leaves = [make(x) for x in xs]
        return leaves, f(*leaves)

    # analytic: one forward + backward per output (grads accumulate, so never share a graph),
    # with graphs recorded even inside a no_grad() block (the engine's enable_grad, if it has one)
    enable_grad = getattr(sys.modules.get(getattr(make, "__module__", ""), None), "enable_grad", None)
    with enable_grad() if enable_grad is not None else contextlib.nullcontext():
        leaves, result = call(point)
        many = isinstance(result, (list, tuple))
        n_out = len(_outputs(result, many))
        analytic: list[list[float]] = []  # analytic[j][i]: d output j / d input i
        for j in range(n_out):
            if j:
                leaves, result = call(point)
            _outputs(result, many)[j].backward()
            analytic.append([float(leaf.grad) for leaf in leaves])

    # numeric: central differences, both sides of each input in turn
    numeric = [[0.0] * len(point) for _ in range(n_out)]
    for i in range(len(point)):
        sides = []
        for step in (eps, -eps):
            shifted = list(point)
            shifted[i] += step
            sides.append([float(o.data) for o in _outputs(call(shifted)[1], many)])
        for j in range(n_out):
            numeric[j][i] = (sides[0][j] - sides[1][j]) / (2 * eps)

    mismatches = []
    for j in range(n_out):
        for i in range(len(point)):
            a, n = analytic[j][i], numeric[j][i]
            if not abs(a - n) <= atol + rtol * abs(n):  # `not <=`: NaN is a mismatch
                mismatches.append((j, i, a, n))
    if not mismatches:
        return True
    if not raise_exception:
        return False

    lines = [f"gradcheck: backward's gradient differs from the finite difference "
             f"(eps={eps}, atol={atol}, rtol={rtol}):"]
    for j, i, a, n in mismatches:
        where = f"output {j}, input {i}" if n_out > 1 else f"input {i}"
        lines.append(f"  {where} (x = {point[i]!r}): analytic {a!r}, numeric {n!r} "
                     f"(|difference| {abs(a - n):.6g} > allowed {atol + rtol * abs(n):.6g})")
    raise GradcheckError("\n".join(lines), mismatches)
