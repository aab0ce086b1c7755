"""Optimizers over a list of Values, with PyTorch's update rules: SGD, Adam, AdamW.

    opt = optim.SGD(model.parameters(), lr=0.1)      # or optim.Adam(..., lr=1e-3)
    for k in range(steps):
        loss = ...
        opt.zero_grad()
        loss.backward()
        opt.step()
        opt.lr = ...                                # a schedule: set the rate between steps

The rules are torch.optim's single-tensor ones (non-fused, no amsgrad, maximize=False) in float64,
so a run can be checked against torch.optim. For the compiled engine's Values, step() and
zero_grad() are one C loop over the parameters' nodes, with the state in C arrays
(micrograd_fast._engine._OptimState); for the reference engine's Values, the Python loops below,
which do the same operations in the same order: both engines agree bit for bit.
"""
from __future__ import annotations

import math
import numbers
import sys
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Value

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


def _kernel(params: list[Any]) -> Any:
    """The compiled state for compiled Values, None for reference Values; TypeError otherwise."""
    from . import reference

    compiled = sys.modules.get(__package__ + "._engine")
    if compiled is not None and all(isinstance(p, compiled.Value) for p in params):
        return compiled._OptimState(params)
    for p in params:
        if not isinstance(p, reference.Value):
            if compiled is not None and isinstance(p, compiled.Value):
                raise TypeError("optimizer parameters must all be Values of one engine")
            raise TypeError(f"optimizer parameters must be Values, not {type(p).__name__!r}")
    return None


def _nonnegative(name: str, x: float) -> float:
    if not isinstance(x, numbers.Real):  # as torch: a string is a TypeError, not converted
        raise TypeError(f"{name} must be a real number, not {type(x).__name__!r}")
    x = float(x)
    if not x >= 0.0:  # nan too
        raise ValueError(f"Invalid {name}: {x}")
    return x


class _Params(list):  # type: ignore[type-arg]
    """param_groups[0]['params']: a list, as torch's, that refuses to change -- the state arrays
    are indexed like the parameters given at construction, so an added or removed one would
    otherwise be silently ignored."""

    def _fixed(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("an optimizer's parameters are fixed when it is made: make a new "
                        "optimizer for other parameters")

    append = extend = insert = pop = remove = clear = sort = reverse = _fixed
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _fixed

    def __reduce__(self) -> tuple[Any, ...]:  # (copy and pickle would append item by item)
        return (_Params, (list(self),))


class Optimizer:
    """What SGD, Adam and AdamW share: the parameters, one parameter group holding the
    hyper-parameters (torch's ``param_groups[0]``; ``opt.lr`` reads and sets its 'lr'), the step
    count, zero_grad() and state_dict() / load_state_dict()."""

    _state_names: tuple[str, ...] = ()  # per-parameter state lists, in state_dict() order

    def __init__(self, params: Iterable[Value], defaults: dict[str, Any]) -> None:
        # fixed at construction (the state arrays are indexed like them): a tuple here, and in
        # param_groups[0]['params'] a list that refuses changes (_Params)
        self._params: tuple[Any, ...] = tuple(params)
        if not self._params:
            raise ValueError("optimizer got an empty parameter list")
        self._c = _kernel(list(self._params))
        for p in self._params:
            if p._prev:  # as torch: a non-leaf's data is recomputed from its children
                raise ValueError("can't optimize a non-leaf Value (one made by an operation): "
                                 "pass the leaves, e.g. model.parameters()")
        if len({id(p) for p in self._params}) != len(self._params):
            warnings.warn("optimizer got the same Value more than once: it is updated once per "
                          "occurrence, with its own state each time (torch keeps one state per "
                          "parameter); pass each parameter once", UserWarning, stacklevel=3)
        n = len(self._params)
        self._state: list[list[float]] = [[0.0] * n for _ in self._state_names]  # reference only
        self._step_count = 0
        self.param_groups: list[dict[str, Any]] = [
            dict(self._check(defaults), params=_Params(self._params))]

    def _own_params(self) -> None:
        """RuntimeError when param_groups[0]['params'] was replaced (a new list is not taken up:
        the state is indexed like the parameters given at construction)."""
        if type(self.param_groups[0]["params"]) is not _Params:
            raise RuntimeError("param_groups[0]['params'] was replaced: an optimizer's parameters "
                               "are fixed when it is made; make a new optimizer for new ones")

    # copy.deepcopy and pickle: the parameters, hyper-parameters, step count and state, with
    # the compiled state arrays made again on the other side
    def __getstate__(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "_c"}
        d["_state"] = [self._get_state(k) for k in range(len(self._state_names))]
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)
        self._c = _kernel(list(self._params))
        for k, values in enumerate(d["_state"]):
            self._set_state(k, values)

    def _check(self, hyper: dict[str, Any]) -> dict[str, Any]:
        """The hyper-parameters, checked and normalised (ValueError for a bad one)."""
        raise NotImplementedError

    @property
    def lr(self) -> float:
        """The learning rate (param_groups[0]['lr']); may be set between steps."""
        return float(self.param_groups[0]["lr"])

    @lr.setter
    def lr(self, value: float) -> None:
        self.param_groups[0]["lr"] = _nonnegative("learning rate", value)

    def _hyper(self) -> dict[str, Any]:
        return {k: v for k, v in self.param_groups[0].items() if k != "params"}

    def _step_group(self) -> dict[str, Any]:
        """param_groups[0] for a step, its parameters the ones given at construction
        (_own_params). The constructor and the lr setter store plain floats there; anything else
        written into it directly (a numpy float32, a Decimal, a tensor) is checked and converted
        first, as the constructor would, so that both engines step with the same Python floats
        (and a bad value is the same error on both)."""
        group = self.param_groups[0]
        if self._c is not None and self._c.plain(group, _Params):  # (the usual case, in C)
            return group
        self._own_params()
        for key, v in group.items():
            t = type(v)
            if not (t is float or t is bool or key == "params"
                    or (t is tuple and all(type(b) is float for b in v))):
                return self._check(group)
        return group

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0.0."""
        self._own_params()
        if self._c is not None:
            self._c.zero_grad()
        else:
            for p in self._params:
                p.grad = 0.0

    def step(self) -> None:
        raise NotImplementedError

    # ---- state as plain Python data ----
    def _get_state(self, k: int) -> list[float]:
        return self._c.get_state(k) if self._c is not None else list(self._state[k])

    def _set_state(self, k: int, values: list[float]) -> None:
        if self._c is not None:
            self._c.set_state(k, values)
        else:
            self._state[k] = [float(x) for x in values]

    def _state_present(self) -> bool:
        return True

    def state_dict(self) -> dict[str, Any]:
        """{'state': {'step': n, <name>: [one float per parameter], ...},
        'param_groups': [{<hyper-parameters>, 'params': [0, 1, ...]}]} -- plain Python data."""
        state: dict[str, Any] = {"step": self._step_count}
        for k, name in enumerate(self._state_names):
            state[name] = self._get_state(k) if self._state_present() else None
        group = self._hyper()
        group["params"] = list(range(len(self._params)))
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a state_dict() of an optimizer of this kind over as many parameters
        (ValueError when the lengths or names do not match)."""
        n = len(self._params)
        groups = state_dict["param_groups"]
        state = state_dict["state"]
        if len(groups) != 1:
            raise ValueError("load_state_dict(): expected one parameter group")
        group = dict(groups[0])
        if len(group.pop("params")) != n:
            raise ValueError(f"load_state_dict(): the state is for {len(groups[0]['params'])} "
                             f"parameters, this optimizer has {n}")
        if set(group) != set(self._hyper()):
            raise ValueError(f"load_state_dict(): hyper-parameters {sorted(group)}, expected "
                             f"{sorted(self._hyper())}")
        if set(state) != {"step", *self._state_names}:
            raise ValueError(f"load_state_dict(): state {sorted(state)}, expected "
                             f"{sorted({'step', *self._state_names})}")
        lists = [state[name] for name in self._state_names]
        for name, values in zip(self._state_names, lists):
            if values is not None and len(values) != n:
                raise ValueError(f"load_state_dict(): {name} has {len(values)} numbers for "
                                 f"{n} parameters")
        checked = self._check(group)
        present = all(values is not None for values in lists)
        # every number converted before anything is set: a bad one leaves this optimizer as it was
        floats = [[float(x) for x in values] if present else [0.0] * n for values in lists]
        step = int(state["step"])
        for k, values in enumerate(floats):
            self._set_state(k, values)
        self._loaded(present)
        self._step_count = step
        self.param_groups[0].update(checked)

    def _loaded(self, present: bool) -> None:
        pass

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self._hyper().items())
        return f"{type(self).__name__}({len(self._params)} parameters, {hyper})"


class SGD(Optimizer):
    """Stochastic gradient descent, as torch.optim.SGD: with weight decay ``g += wd * p``; with
    momentum ``b = g`` at first, then ``b = momentum * b + (1 - dampening) * g``, and ``g = b``
    (or ``g += momentum * b`` with nesterov); then ``p -= lr * g``. Without momentum and weight
    decay that is the notebook's ``p.data -= lr * p.grad``, bit for bit."""

    _state_names = ("momentum_buffer",)

    def __init__(self, params: Iterable[Value], lr: float, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0, nesterov: bool = False) -> None:
        self._has_buffer = False  # torch: momentum_buffer is None until the first momentum step
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check(self, hyper: dict[str, Any]) -> dict[str, Any]:
        h = dict(lr=_nonnegative("learning rate", hyper["lr"]),
                 momentum=_nonnegative("momentum value", hyper["momentum"]),
                 dampening=float(hyper["dampening"]),
                 weight_decay=_nonnegative("weight_decay value", hyper["weight_decay"]),
                 nesterov=bool(hyper["nesterov"]))
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        return h

    def _state_present(self) -> bool:
        return self._has_buffer

    def _loaded(self, present: bool) -> None:
        self._has_buffer = present

    def step(self) -> None:
        """One update of every parameter from its grad."""
        group = self._step_group()
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        nesterov, keep = group["nesterov"], 1 - group["dampening"]
        first = not self._has_buffer
        if self._c is not None:
            self._c.sgd(lr, momentum, keep, weight_decay, nesterov, first)
        else:
            buf = self._state[0]
            for k, p in enumerate(self._params):
                x, g = p.data, p.grad
                if weight_decay != 0:
                    g = g + weight_decay * x
                if momentum != 0:
                    b = g if first else buf[k] * momentum + keep * g
                    buf[k] = b
                    g = g + momentum * b if nesterov else b
                p.data = x - lr * g
        if momentum != 0:
            self._has_buffer = True
        self._step_count += 1


class Adam(Optimizer):
    """Adam, as torch.optim.Adam: with weight decay ``g += wd * p``; ``m = lerp(m, g, 1 - beta1)``,
    ``v = beta2 * v + (1 - beta2) * g * g``; ``p -= lr / (1 - beta1**t) * m /
    (sqrt(v) / sqrt(1 - beta2**t) + eps)`` (t: the step number, from 1)."""

    _state_names = ("exp_avg", "exp_avg_sq")
    _decoupled = False  # AdamW: the weight decay scales the parameter instead

    def __init__(self, params: Iterable[Value], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _check(self, hyper: dict[str, Any]) -> dict[str, Any]:
        betas = tuple(hyper["betas"])
        for b in betas:
            if not isinstance(b, numbers.Real):  # (a string is not converted: as torch)
                raise TypeError(f"betas must be real numbers, not {type(b).__name__!r}")
        beta1, beta2 = (float(b) for b in betas)
        for i, b in enumerate((beta1, beta2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b}")
        return dict(lr=_nonnegative("learning rate", hyper["lr"]), betas=(beta1, beta2),
                    eps=_nonnegative("epsilon value", hyper["eps"]),
                    weight_decay=_nonnegative("weight_decay value", hyper["weight_decay"]))

    def step(self) -> None:
        """One update of every parameter from its grad."""
        group = self._step_group()
        lr, (beta1, beta2), eps, weight_decay = (
            group["lr"], group["betas"], group["eps"], group["weight_decay"])
        self._step_count += 1
        t = float(self._step_count)
        # the step's scalars, computed as torch computes them (Python floats)
        step_size = lr / (1 - beta1**t)
        bc2_sqrt = (1 - beta2**t) ** 0.5
        w1, w2 = 1 - beta1, 1 - beta2
        small = abs(w1) < 0.5  # torch's lerp: two formulas, the accurate one for each weight
        decay_mode, decay = 0, 0.0
        if weight_decay != 0:
            decay_mode, decay = (2, 1 - lr * weight_decay) if self._decoupled else (1, weight_decay)
        if self._c is not None:
            self._c.adam(-step_size, bc2_sqrt, eps, w1, small, beta2, w2, decay_mode, decay)
            return
        neg_step_size = -step_size
        ms, vs = self._state
        for k, p in enumerate(self._params):
            x, g = p.data, p.grad
            if decay_mode == 1:
                g = g + decay * x
            elif decay_mode == 2:
                x = x * decay
            m = ms[k]
            m = m + w1 * (g - m) if small else g - (g - m) * (1 - w1)
            v = vs[k] * beta2 + (w2 * g) * g
            ms[k], vs[k] = m, v
            p.data = x + _divide(neg_step_size * m, math.sqrt(v) / bc2_sqrt + eps)


def _divide(a: float, b: float) -> float:
    """a / b as C (and torch) divide doubles: by a zero (eps=0 and a zero gradient), nan or an
    infinity, not a ZeroDivisionError -- so the compiled engine's step and this one agree."""
    if b:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


class AdamW(Adam):
    """AdamW, as torch.optim.AdamW: Adam whose weight decay is decoupled from the gradient,
    ``p *= 1 - lr * weight_decay`` before the Adam update."""

    _decoupled = True

    def __init__(self, params: Iterable[Value], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
