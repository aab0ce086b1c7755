"""The pure-Python engine: the spec, the fallback and the test oracle.

It reads like micrograd's engine.py and gives micrograd's numbers, with four deliberate changes:

* backward() sorts the graph without recursion, so graphs of any depth work;
* the order of that sort is fixed -- newest node first, by creation number -- so both engines
  add gradient contributions in exactly the same order and agree to the last bit;
* each node's local backward is a plain function of the node (no closure), so graphs hold no
  reference cycles and are freed as soon as they are dropped;
* data and grad are always Python floats, and a non-number is a TypeError.

The compiled engine (micrograd_fast._engine) must behave exactly like this module.
"""
from __future__ import annotations

import itertools
import math
import numbers
import operator
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional, SupportsIndex, TypeVar, Union, overload

from ._copying import with_slots

__all__ = ["Value", "assign", "cross_entropy", "dot", "enable_grad", "is_grad_enabled", "layer",
           "log_softmax", "logsumexp", "neuron_parameters", "no_grad", "softmax", "sum_values",
           "zero_grad_neurons", "zero_grads"]

_creation = itertools.count(1)  # creation number of every node: the order backward() follows


def _real(x: Any, what: str = "data") -> float:
    """float(x) for real numbers only: strings and other non-numbers are a TypeError."""
    if type(x) is float:
        return x
    if isinstance(x, (str, bytes, bytearray)):
        raise TypeError(f"Value {what} must be a real number, not {type(x).__name__!r}")
    try:
        return float(x)
    except TypeError:
        raise TypeError(f"Value {what} must be a real number, not {type(x).__name__!r}") from None


def _number(x: Any) -> Optional[float]:
    """float(x) for a real number, None for anything else."""
    if isinstance(x, (str, bytes, bytearray)):
        return None
    try:
        return float(x)
    except TypeError:
        return None


def _operand(other: Any) -> Optional[Value]:
    """An operator's operand as a Value, or None when it is not a real number (_real_number)."""
    if isinstance(other, Value):
        return other
    x = _real_number(other)
    return None if x is None else Value(x)


def _not_an_item(who: str, item: Any) -> str:
    """The TypeError message for an item of dot() & co. that is not a Value or a number: another
    library's Value (upstream micrograd's, say) is named with its module."""
    t = type(item)
    name = t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    return f"{who}() takes Values or real numbers, not {name!r}"


def _item(item: Any) -> Optional[Value]:
    """An item of dot() & co. as a Value: a Value, or a real number (what float's operators
    take, as micrograd's w * x does); None for anything else."""
    if isinstance(item, Value):
        return item
    x = _as_real(item)
    return None if x is None else Value(x)


def _as_real(x: Any) -> Optional[float]:
    """x as float's own operators read it: for a real number (numbers.Real) its value as a
    float -- an instance of a float or int subclass is the number it holds, whatever __float__
    the subclass defines -- else None."""
    if isinstance(x, float):
        return float.__float__(x)
    if isinstance(x, int):
        return int.__float__(x)  # OverflowError for a huge int, as float + int
    if isinstance(x, numbers.Real):
        return _number(x)
    return None


def _real_number(x: Any) -> Optional[float]:
    """float(x) for an operator's operand that is a real number -- numbers.Real: int, bool,
    float, Fraction, numpy's numbers -- else None, and the operator returns NotImplemented: what
    float's own operators refuse (a Decimal, an object with only a __float__) is a TypeError.
    Another autograd library's value is a TypeError here."""
    y = _as_real(x)
    if y is not None:
        return y
    if hasattr(x, "backward") and hasattr(x, "grad") and hasattr(x, "data"):
        # another autograd library's value (upstream micrograd's Value, a torch tensor): left to
        # its own reflected operator it would wrap our Value as its data, and backward() would
        # never reach our nodes -- a model that silently does not train
        t = type(x)
        raise TypeError(f"a micrograd_fast Value cannot be combined with a {t.__module__}."
                        f"{t.__qualname__}: gradients cannot flow between two autograd "
                        f"libraries (make both with the same Value class)")
    return None


def _negated(number: Any, x: float) -> float:
    """The leaf micrograd's self + (-number) makes: -x (x = float(number)), except that a zero
    gets the sign its own type gives it (-0 is the int 0, -0.0 is -0.0). Not negated in the
    number's own type otherwise: numpy's unsigned ints would wrap around (2 - np.uint8(3) is
    -1.0 here, as for a float; micrograd's 255 is numpy's overflow)."""
    if x != 0.0:
        return -x
    try:
        z = _number(-number)
    except (ArithmeticError, TypeError, ValueError):
        z = None
    return z if z == 0.0 else -x


def _pow(x: float, k: float) -> float:
    """Python's float power, except that a complex result is a ValueError (as math.pow)."""
    if x < 0 and math.isfinite(x) and math.isfinite(k) and k != math.floor(k):
        # Python would make a complex number (or fail making it: OverflowError)
        raise ValueError("negative number cannot be raised to a fractional power")
    r: Union[float, complex] = x ** k
    if isinstance(r, complex):
        raise ValueError("negative number cannot be raised to a fractional power")
    return r


def _tanh(x: float) -> float:
    """The lecture's tanh, (e**2x - 1) / (e**2x + 1), to the last bit -- without its overflow:
    where e**2x overflows the result is 1.0 (as math.tanh's)."""
    try:
        e = math.exp(2 * x)
    except OverflowError:
        return 1.0
    if e == math.inf:  # x = inf
        return 1.0
    return (e - 1) / (e + 1)


def _sigmoid(x: float) -> float:
    # both branches call exp on a non-positive number, so neither can overflow
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class Value:
    """A scalar that remembers how it was made, so that backward() can find its gradient."""

    # the attributes every Value has (set by __init__ and by _node); the defaults serve a Value
    # made without __init__ -- a subclass whose own __init__ assigns data, grad, _backward,
    # _prev and _op, as micrograd's __init__ does
    _data: float
    _grad: float = 0.0
    _children: tuple[Value, ...] = ()
    _op: str = ''
    label: str = ''
    _local: Optional[Callable[[Value], None]] = None
    _py: Optional[Callable[[], object]] = None
    _k: float = 0.0
    _seq: int = 0  # (a leaf's place in the order does not matter; _prev's setter sets it)

    def __init__(self, data: float, _children: Iterable[Value] = (), _op: str = '',
                 label: str = '') -> None:
        children = tuple(_children)  # (once: _children may be a generator)
        for child in children:  # (checked before anything is set: a failed call changes nothing)
            if not isinstance(child, Value):
                raise TypeError(f"Value children must be Values, not {type(child).__name__!r}")
        self.data = data
        self.grad = 0.0
        self._children = children  # ordered, repeats kept: a + a feeds a twice
        self._op = _op  # the op that produced this node, for graphviz / debugging
        self.label = label
        self._local = None  # built-in ops: a function f(out) that runs out's local backward
        self._py = None  # a user's backward callable (out._backward = fn)
        self._k = 0.0  # the op's constant: the exponent of x**k
        self._seq = next(_creation)

    @classmethod
    def _node(cls, data: float, children: tuple[Value, ...], op: str,
              local: Optional[Callable[[Value], None]], k: float = 0.0) -> Value:
        # the result of a built-in op: skips __init__'s checks, always a plain Value (as micrograd)
        if _threads_without_grad and not is_grad_enabled():  # no_grad(): a plain leaf
            children, op, local = (), '', None
        out = Value.__new__(Value)
        out._data, out._grad = data, 0.0
        out._children, out._op, out.label = children, op, ''
        out._local, out._py, out._k = local, None, k
        out._seq = next(_creation)
        return out

    # ---- data and grad are floats ----
    @property
    def data(self) -> float:
        return self._data

    @data.setter
    def data(self, x: float) -> None:
        self._data = _real(x)

    @property
    def grad(self) -> float:
        return self._grad

    @grad.setter
    def grad(self, x: float) -> None:
        self._grad = _real(x, "grad")

    @property
    def _prev(self) -> set[Value]:
        return set(self._children)

    @_prev.setter
    def _prev(self, children: Iterable[Value]) -> None:
        # micrograd's __init__ assigns self._prev = set(_children); a subclass with an __init__
        # of its own does the same. A Value still being made (no children yet) gets these
        # children and its place in the creation order after them; others cannot change theirs.
        kids = tuple(children)
        if not kids and not self._children:
            return
        if self._children:
            raise AttributeError("_prev can only be assigned while a Value is being made (no "
                                 "children yet, not used by another Value), as __init__ does")
        for child in kids:
            if not isinstance(child, Value):
                raise TypeError(f"Value children must be Values, not {type(child).__name__!r}")
        self._children = kids
        self._seq = next(_creation)

    @property
    def _backward(self) -> Callable[[], object]:
        """This node's local backward: adds its contribution to its children's grads."""
        return self._py if self._py is not None else self._run_local

    @_backward.setter
    def _backward(self, fn: Callable[[], object]) -> None:
        if not callable(fn):
            raise TypeError(f"_backward must be callable, not {type(fn).__name__!r}")
        self._py = fn

    def _run_local(self) -> None:
        if self._local is not None:
            self._local(self)

    # ---- the operators micrograd has ----
    def __add__(self, other: Union[Value, float]) -> Value:
        o = _operand(other)
        if o is None:
            return NotImplemented
        return self._node(self.data + o.data, (self, o), '+', _add_backward)

    def __mul__(self, other: Union[Value, float]) -> Value:
        o = _operand(other)
        if o is None:
            return NotImplemented
        return self._node(self.data * o.data, (self, o), '*', _mul_backward)

    def __pow__(self, other: Union[Value, float]) -> Value:
        if isinstance(other, Value):  # beyond micrograd: a Value exponent
            return self._node(_pow(self.data, other.data), (self, other), '**', _vpow_backward)
        k = _real_number(other)
        if k is None:
            return NotImplemented
        return self._node(_pow(self.data, k), (self,), f'**{other}', _pow_backward, k)

    def __rpow__(self, other: float) -> Value:  # other ** self
        base = _operand(other)
        if base is None:
            return NotImplemented
        return base ** self

    def relu(self) -> Value:
        x = self.data
        return self._node(0.0 if x < 0 else x, (self,), 'ReLU', _relu_backward)

    def tanh(self) -> Value:
        return self._node(_tanh(self.data), (self,), 'tanh', _tanh_backward)

    def exp(self) -> Value:
        return self._node(math.exp(self.data), (self,), 'exp', _exp_backward)

    def log(self) -> Value:
        return self._node(math.log(self.data), (self,), 'log', _log_backward)

    def sigmoid(self) -> Value:
        return self._node(_sigmoid(self.data), (self,), 'sigmoid', _sigmoid_backward)

    # ---- derived operators: the same graph shapes as micrograd ----
    def __neg__(self) -> Value:  # -self
        return self * -1

    def __radd__(self, other: Union[Value, float]) -> Value:  # other + self
        if not isinstance(other, Value) and _real_number(other) is None:
            return NotImplemented  # (self + other would ask other's __radd__ again)
        return self + other

    def __sub__(self, other: Union[Value, float]) -> Value:  # self - other
        if isinstance(other, Value):
            return self + (-other)
        x = _real_number(other)
        if x is None:
            return NotImplemented
        return self + _negated(other, x)

    def __rsub__(self, other: Union[Value, float]) -> Value:  # other - self
        # (other a Value: Python asks a subclass's reflected operator first)
        if not isinstance(other, Value) and _real_number(other) is None:
            return NotImplemented
        return other + (-self)

    def __rmul__(self, other: Union[Value, float]) -> Value:  # other * self
        if not isinstance(other, Value) and _real_number(other) is None:
            return NotImplemented
        return self * other

    def __truediv__(self, other: Union[Value, float]) -> Value:  # self / other
        if isinstance(other, Value):
            return self * other**-1
        x = _real_number(other)
        if x is None:
            return NotImplemented
        return self * _pow(x, -1.0)  # micrograd: other**-1 on the plain number

    def __rtruediv__(self, other: Union[Value, float]) -> Value:  # other / self
        if not isinstance(other, Value) and _real_number(other) is None:
            return NotImplemented
        return other * self**-1

    def __reduce__(self) -> tuple[object, ...]:
        # copy, deepcopy and pickle give a leaf with the same data, grad, label and extra
        # attributes and the same class; the graph that made the Value is not copied
        extra = {k: v for k, v in vars(self).items() if k not in _VALUE_FIELDS} or None
        if type(self) is not Value:
            extra = with_slots(self, extra)
        return _rebuild, (type(self), self.data, self.grad, self.label, extra)

    def _graph(self) -> list[Value]:
        # topological order: every node reachable from self, found without recursion, then
        # newest first -- a node is always created after its children, so that order is valid
        topo: list[Value] = []
        stack, seen = [self], {self}
        while stack:
            v = stack.pop()
            topo.append(v)
            for child in v._children:
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        topo.sort(key=lambda v: v._seq, reverse=True)
        return topo

    def backward(self) -> None:
        # go one node at a time and apply the chain rule to get its children's gradients
        topo = self._graph()
        self.grad = 1.0
        for v in topo:
            v._backward()

    def recompute(self) -> float:
        """Re-evaluate every node under this Value from the current data of its leaves, oldest
        first, with the operators' formulas (the numbers equal rebuilding the graph's
        structure); return the new data. Recomputed nodes' grads become 0.0, as a rebuilt
        graph's would; leaves keep data and grad. Only the recorded structure is replayed."""
        order = self._graph()[::-1]  # children before parents
        for v in order:  # check everything before changing anything
            if v._py is not None or (v._children and v._local not in _FORWARD):
                raise RuntimeError(
                    f"recompute(): a node under this Value (op {v._op!r}, label {v.label!r}) "
                    "has its backward in Python (a hand-built node or an assigned _backward), "
                    "so it has no forward rule to replay; nothing was changed. Rebuild the "
                    "graph instead.")
        for v in order:
            if v._children:  # leaves (inputs, parameters, constants) keep their data
                v._data = _FORWARD[v._local](v)  # type: ignore[index]
                v._grad = 0.0
        return self.data

    def zero_grad(self) -> None:
        """Set the grad of every node under this Value (itself and the leaves included) to 0."""
        for v in self._graph():
            v._grad = 0.0

    def __repr__(self) -> str:
        return f"Value(data={self.data}, grad={self.grad})"


# ---- local backward of each built-in op: out's grad flows into its children ----

_VALUE_FIELDS = frozenset(Value.__annotations__)


def _rebuild(cls: type[Value], data: float, grad: float, label: str,
             state: Optional[dict[str, object]]) -> Value:
    v = cls.__new__(cls)
    Value.__init__(v, data, label=label)
    v.grad = grad
    for key, value in (state or {}).items():
        setattr(v, key, value)
    return v


def _add_backward(out: Value) -> None:
    a, b = out._children
    a.grad += out.grad
    b.grad += out.grad


def _mul_backward(out: Value) -> None:
    a, b = out._children
    a.grad += b.data * out.grad
    b.grad += a.data * out.grad


def _pow_backward(out: Value) -> None:  # d/dx x**k = k * x**(k-1)
    (a,) = out._children
    k = out._k
    a.grad += (k * _pow(a.data, k - 1)) * out.grad


def _vpow_backward(out: Value) -> None:  # d/da a**b = b * a**(b-1);  d/db a**b = a**b * log(a)
    a, b = out._children
    x, y = a.data, b.data
    a.grad += (y * _pow(x, y - 1)) * out.grad
    if x > 0:
        dy = out.data * math.log(x)
    else:  # as torch: 0 where a == 0 and b >= 0, undefined (nan) where a < 0
        dy = 0.0 if (x == 0 and y >= 0) else math.nan
    b.grad += dy * out.grad


def _relu_backward(out: Value) -> None:
    (a,) = out._children
    a.grad += (out.data > 0) * out.grad


def _tanh_backward(out: Value) -> None:  # d tanh = 1 - tanh**2, as the lecture writes it
    (a,) = out._children
    t = out.data
    a.grad += (1 - t**2) * out.grad  # (t**2 is libm's pow: not always t * t to the last bit)


def _exp_backward(out: Value) -> None:  # d exp = exp
    (a,) = out._children
    a.grad += out.data * out.grad


def _log_backward(out: Value) -> None:  # d log x = 1 / x
    (a,) = out._children
    a.grad += out.grad / a.data


def _sigmoid_backward(out: Value) -> None:  # d s = s * (1 - s)
    (a,) = out._children
    s = out.data
    a.grad += (s * (1 - s)) * out.grad


def _dot_backward(out: Value) -> None:
    bias, *rest = out._children
    n = len(rest) // 2
    bias.grad += out.grad
    for w, x in zip(rest[:n], rest[n:]):
        w.grad += x.data * out.grad
        x.grad += w.data * out.grad


def _sum_backward(out: Value) -> None:
    for child in out._children:
        child.grad += out.grad


# ---- forward rule of each built-in op, for recompute(): the operators' own formulas ----

def _add_forward(out: Value) -> float:
    a, b = out._children
    return a.data + b.data


def _mul_forward(out: Value) -> float:
    a, b = out._children
    return a.data * b.data


def _pow_forward(out: Value) -> float:
    (a,) = out._children
    return _pow(a.data, out._k)


def _vpow_forward(out: Value) -> float:
    a, b = out._children
    return _pow(a.data, b.data)


def _relu_forward(out: Value) -> float:
    x = out._children[0].data
    return 0.0 if x < 0 else x


def _dot_forward(out: Value) -> float:  # summed left to right from the bias, as dot()
    bias, *rest = out._children
    n = len(rest) // 2
    acc = bias.data
    for w, x in zip(rest[:n], rest[n:]):
        acc = acc + w.data * x.data
    return acc


def _sum_forward(out: Value) -> float:  # left to right, as sum_values()
    first, *rest = out._children
    acc = first.data
    for v in rest:
        acc = acc + v.data
    return acc


_FORWARD: dict[Callable[[Value], None], Callable[[Value], float]] = {
    _add_backward: _add_forward,
    _mul_backward: _mul_forward,
    _pow_backward: _pow_forward,
    _vpow_backward: _vpow_forward,
    _relu_backward: _relu_forward,
    _tanh_backward: lambda out: _tanh(out._children[0].data),
    _exp_backward: lambda out: math.exp(out._children[0].data),
    _log_backward: lambda out: math.log(out._children[0].data),
    _sigmoid_backward: lambda out: _sigmoid(out._children[0].data),
    _dot_backward: _dot_forward,
    _sum_backward: _sum_forward,
}


# ---- fused helpers: one node, the same numbers as the unfused expression ----

def dot(ws: Iterable[Union[Value, float]], xs: Iterable[Union[Value, float]],
        bias: Union[Value, float]) -> Value:
    """bias + w0*x0 + w1*x1 + ... as ONE node ('dot'), summed left to right from bias.

    Exactly the numbers of micrograd's Neuron, ``sum((wi*xi for wi, xi in zip(w, x)), b)``,
    with one node instead of 2n. Pairs stop at the shorter of ws and xs, as zip does.
    """
    pairs = []
    for w_in, x_in in zip(ws, xs):
        w, x = _item(w_in), _item(x_in)
        if w is None or x is None:
            raise TypeError(_not_an_item("dot", w_in if w is None else x_in))
        pairs.append((w, x))
    b = _item(bias)
    if b is None:
        raise TypeError(_not_an_item("dot", bias))
    acc = b.data
    for w, x in pairs:
        acc = acc + w.data * x.data
    children = (b, *(w for w, _ in pairs), *(x for _, x in pairs))
    return Value._node(acc, children, 'dot', _dot_backward)


def layer(neurons: Iterable[Callable[[Any], Any]], x: Any,
          neuron_type: type[Any]) -> list[Any]:
    """Calls each neuron on x: ``[n(x) for n in neurons]``. (The compiled engine computes
    neurons of exactly neuron_type itself, with the same nodes in the same order.)"""
    return [n(x) for n in neurons]


def mlp(layers: Iterable[Callable[[Any], Any]], x: Any, layer_type: type[Any],
        neuron_type: type[Any]) -> Any:
    """Calls each layer on the previous one's output: ``for layer in layers: x = layer(x)``.
    (The compiled engine computes layers of exactly layer_type itself, with the same nodes in
    the same order.)"""
    for lay in layers:
        x = lay(x)
    return x


def neuron_parameters(neurons: Iterable[Any], neuron_type: type[Any],
                      out: Optional[list[Value]] = None) -> list[Value]:
    """All the neurons' parameters in order: ``[p for n in neurons for p in n.parameters()]``,
    appended to out when given. (The compiled engine reads neurons of exactly neuron_type
    itself, with the same result.)"""
    params = [] if out is None else out
    params.extend(p for n in neurons for p in n.parameters())
    return params


def zero_grad_neurons(neurons: Iterable[Any], neuron_type: type[Any]) -> None:
    """``zero_grads(neuron_parameters(neurons, neuron_type))`` (the compiled engine's reads
    plain Neurons itself, without building the list)."""
    zero_grads(neuron_parameters(neurons, neuron_type))


def sum_values(values: Iterable[Union[Value, float]], start: Union[Value, float] = 0) -> Value:
    """start + v0 + v1 + ... as ONE node ('sum'): the numbers of the builtin sum(values, start)."""
    children = []
    for item in (start, *values):
        v = _item(item)
        if v is None:
            raise TypeError(_not_an_item("sum_values", item))
        children.append(v)
    acc = children[0].data
    for v in children[1:]:
        acc = acc + v.data
    return Value._node(acc, tuple(children), 'sum', _sum_backward)


# ---- classification: softmax and cross-entropy, each one node with a closed-form backward ----
#
# Every node is over ALL the inputs (its children, in the given order); its constant `_k` says
# which output it is (softmax, log_softmax) or the target class (cross_entropy). The max is
# subtracted before exp, so no exp can overflow and logits of +-1000 keep their answer:
#     m = max(x),  s = exp(x0 - m) + exp(x1 - m) + ... (left to right),  logsumexp = m + log(s)
# The backward recomputes m and s from the children's data (as * reads its children's data).

def _exp(z: float) -> float:
    # math.exp, overflowing to inf as C's exp does (z > 0 only when the max is +inf)
    try:
        return math.exp(z)
    except OverflowError:
        return math.inf


def _log(s: float) -> float:
    # math.log, with log(0) = -inf as C's log (s == 0 only when every input is -inf)
    return math.log(s) if s != 0 else -math.inf


def _shift_and_sum(xs: Sequence[float]) -> tuple[float, float]:
    """(m, s): the largest x (0 when that is infinite, as torch: inf - inf would be nan) and the
    sum of exp(x - m), left to right."""
    m = xs[0]
    for x in xs[1:]:
        if x > m:
            m = x
    if math.isinf(m):
        m = 0.0
    s = 0.0
    for x in xs:
        s = s + _exp(x - m)
    return m, s


def _prob(x: float, m: float, s: float) -> float:  # softmax: exp(x - m) / s
    return _exp(x - m) / s if s != 0 else math.nan


def _classify_items(values: Iterable[Union[Value, float]], who: str) -> list[Value]:
    items = []
    for item in values:
        v = _item(item)
        if v is None:
            raise TypeError(_not_an_item(who, item))
        items.append(v)
    if not items:
        raise ValueError(f"{who}() of an empty list")
    return items


def softmax(values: Iterable[Union[Value, float]]) -> list[Value]:
    """[exp(x_i) / sum_j exp(x_j) for each i]: one 'softmax' node per output, each over all the
    inputs, computed as exp(x_i - max) / s."""
    xs = _classify_items(values, "softmax")
    children = tuple(xs)
    m, s = _shift_and_sum([x.data for x in xs])
    return [Value._node(_prob(x.data, m, s), children, 'softmax', _softmax_backward, i)
            for i, x in enumerate(xs)]


def log_softmax(values: Iterable[Union[Value, float]]) -> list[Value]:
    """[x_i - logsumexp(x) for each i]: one 'log_softmax' node per output, each over all the
    inputs, computed as (x_i - max) - log(s)."""
    xs = _classify_items(values, "log_softmax")
    children = tuple(xs)
    m, s = _shift_and_sum([x.data for x in xs])
    return [Value._node((x.data - m) - _log(s), children, 'log_softmax', _log_softmax_backward, i)
            for i, x in enumerate(xs)]


def logsumexp(values: Iterable[Union[Value, float]]) -> Value:
    """log(exp(x0) + exp(x1) + ...) as ONE node ('logsumexp'), computed as max + log(s)."""
    xs = _classify_items(values, "logsumexp")
    m, s = _shift_and_sum([x.data for x in xs])
    return Value._node(m + _log(s), tuple(xs), 'logsumexp', _logsumexp_backward)


def _target(target: SupportsIndex) -> int:
    # a class index: an int (or anything with __index__, a numpy integer), not a bool or float
    if isinstance(target, bool) or not hasattr(type(target), "__index__"):
        raise TypeError(f"cross_entropy() target must be an int class index, "
                        f"not {type(target).__name__!r}")
    return operator.index(target)


def cross_entropy(logits: Iterable[Union[Value, float]], target: SupportsIndex) -> Value:
    """-log softmax(logits)[target] = logsumexp(logits) - logits[target], as ONE node
    ('cross_entropy'), computed as log(s) - (logits[target] - max). Its gradient is p - onehot.
    A batch's loss is the mean: sum(losses) / n."""
    t = _target(target)
    xs = _classify_items(logits, "cross_entropy")
    if not 0 <= t < len(xs):
        raise IndexError(f"cross_entropy() target {t} is out of range for {len(xs)} classes")
    m, s = _shift_and_sum([x.data for x in xs])
    return Value._node(_log(s) - (xs[t].data - m), tuple(xs), 'cross_entropy',
                       _cross_entropy_backward, t)


def _softmax_backward(out: Value) -> None:  # d p_i / d x_j = p_i * ([i == j] - p_j)
    i, xs = int(out._k), out._children
    m, s = _shift_and_sum([x.data for x in xs])
    p_i = _prob(xs[i].data, m, s)
    for j, x in enumerate(xs):
        x.grad += (p_i * ((i == j) - _prob(x.data, m, s))) * out.grad


def _log_softmax_backward(out: Value) -> None:  # d log p_i / d x_j = [i == j] - p_j
    i, xs = int(out._k), out._children
    m, s = _shift_and_sum([x.data for x in xs])
    for j, x in enumerate(xs):
        x.grad += ((i == j) - _prob(x.data, m, s)) * out.grad


def _logsumexp_backward(out: Value) -> None:  # d logsumexp / d x_j = p_j
    xs = out._children
    m, s = _shift_and_sum([x.data for x in xs])
    for x in xs:
        x.grad += _prob(x.data, m, s) * out.grad


def _cross_entropy_backward(out: Value) -> None:  # d loss / d x_j = p_j - [j == target]
    t, xs = int(out._k), out._children
    m, s = _shift_and_sum([x.data for x in xs])
    for j, x in enumerate(xs):
        x.grad += (_prob(x.data, m, s) - (j == t)) * out.grad


def _softmax_forward(out: Value) -> float:
    xs = out._children
    m, s = _shift_and_sum([x.data for x in xs])
    return _prob(xs[int(out._k)].data, m, s)


def _log_softmax_forward(out: Value) -> float:
    xs = out._children
    m, s = _shift_and_sum([x.data for x in xs])
    return (xs[int(out._k)].data - m) - _log(s)


def _logsumexp_forward(out: Value) -> float:
    m, s = _shift_and_sum([x.data for x in out._children])
    return m + _log(s)


def _cross_entropy_forward(out: Value) -> float:
    xs = out._children
    m, s = _shift_and_sum([x.data for x in xs])
    return _log(s) - (xs[int(out._k)].data - m)


_FORWARD.update({  # recompute() of the classification nodes: their forward, as made above
    _softmax_backward: _softmax_forward,
    _log_softmax_backward: _log_softmax_forward,
    _logsumexp_backward: _logsumexp_forward,
    _cross_entropy_backward: _cross_entropy_forward,
})


# ---- bulk setters for training loops ----

def zero_grads(values: Iterable[Value]) -> None:
    """Set each Value's grad to 0.0 (e.g. a model's parameters)."""
    values = _values(values, "zero_grads")
    for v in values:
        v.grad = 0.0


def assign(leaves: Iterable[Value], numbers: Iterable[float]) -> None:
    """Set leaves[k].data = numbers[k] for every k. Everything is checked before anything is
    set: a non-Value is a TypeError, different lengths a ValueError, a non-number a TypeError."""
    leaves = _values(leaves, "assign")
    xs = list(numbers)
    if len(xs) != len(leaves):
        raise ValueError(f"assign(): {len(leaves)} Values but {len(xs)} numbers")
    for k, x in enumerate(xs):
        y = _number(x)
        if y is None:
            raise TypeError(f"assign() takes real numbers, not {type(x).__name__!r}")
        xs[k] = y
    for v, y in zip(leaves, xs):
        v.data = y


def _values(values: Iterable[Value], who: str) -> list[Value]:
    values = list(values)
    for v in values:
        if not isinstance(v, Value):
            raise TypeError(f"{who}() takes Values, not {type(v).__name__!r}")
    return values


# ---- grad mode: no_grad / enable_grad, per thread (as torch's) ----

_grad_mode = threading.local()  # .off is True while this thread is inside no_grad()
_threads_without_grad = 0  # how many threads are: while none is, operators skip the lookup
_grad_mode_lock = threading.Lock()


def is_grad_enabled() -> bool:
    """Whether operators record a graph in this thread (False inside no_grad())."""
    return not getattr(_grad_mode, "off", False)


def _set_grad_enabled(mode: bool) -> bool:
    """Set this thread's grad mode (True: record graphs); return the previous mode."""
    global _threads_without_grad
    was = is_grad_enabled()
    if bool(mode) != was:
        _grad_mode.off = not mode
        with _grad_mode_lock:
            _threads_without_grad += -1 if mode else 1
    return was


_F = TypeVar("_F", bound=Callable[..., Any])
_G = TypeVar("_G", bound="_GradMode")


class _GradMode:
    """Context manager and decorator that sets this thread's grad mode and restores it on exit
    (exceptions included). Re-entrant; as a decorator each call gets its own context."""

    _mode = True

    _saved: list[bool]  # the modes to restore, one per active `with` of this object

    @overload
    def __new__(cls: type[_G], fn: None = None) -> _G: ...

    @overload
    def __new__(cls, fn: _F) -> _F: ...  # type: ignore[misc]

    def __new__(cls, fn: Optional[Callable[..., Any]] = None) -> Any:
        # `@no_grad` without parentheses (as torch allows): the class called on the function
        self = super().__new__(cls)
        self._saved = []
        return self if fn is None else self(fn)

    def __enter__(self) -> None:
        self._saved.append(_set_grad_enabled(self._mode))

    def __exit__(self, *exc_info: object) -> None:
        _set_grad_enabled(self._saved.pop())

    def __call__(self, fn: _F) -> _F:
        from ._gradmode_decorator import decorate

        return decorate(type(self), fn)


class no_grad(_GradMode):
    """Operators inside ``with no_grad():`` (or in a function decorated ``@no_grad()``) return
    plain leaves holding the usual forward value and record no graph. Per thread, as torch's."""

    _mode = False


class enable_grad(_GradMode):
    """Turns recording back on inside no_grad() (per thread, as torch's enable_grad)."""

    _mode = True
