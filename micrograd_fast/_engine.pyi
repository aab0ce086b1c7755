# Type stubs for the compiled engine (src/micrograd_fast/_engine.pyx).
#
# The extension behaves exactly like micrograd_fast/reference.py; these stubs describe the API it
# shares with micrograd. Stubs are never executed, so `X | Y` is fine for every Python version.
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, SupportsFloat, SupportsIndex, TypedDict, TypeVar, overload

# What the operators take besides a Value: a real number (int is accepted wherever float is,
# and is spelled out here for the reader). Anything else gives NotImplemented / TypeError.
# a real number: float, int, bool, Fraction, numpy's numbers (anything with __float__ types
# as one; at run time an operator also refuses a Decimal, as float's own operators do)
_Number = SupportsFloat
_Operand = Value | SupportsFloat

class Value:
    """A scalar that remembers how it was made, so that backward() can find its gradient."""

    def __init__(
        self,
        data: _Number,
        _children: Iterable[Value] = (),
        _op: str = "",
        label: str = "",
    ) -> None: ...

    # ---- the numbers: always floats (an int assigned is stored as a float) ----
    @property
    def data(self) -> float: ...
    @data.setter
    def data(self, value: _Number) -> None: ...
    @property
    def grad(self) -> float: ...
    @grad.setter
    def grad(self, value: _Number) -> None: ...
    @property
    def label(self) -> str: ...
    @label.setter
    def label(self, value: str) -> None: ...

    # ---- the graph (micrograd's "private" attributes, used by the lecture and draw_dot) ----
    @property
    def _op(self) -> str: ...
    @_op.setter
    def _op(self, value: str) -> None: ...
    @property
    def _prev(self) -> set[Value]: ...
    @property
    def _backward(self) -> Callable[[], object]: ...
    @_backward.setter
    def _backward(self, fn: Callable[[], object]) -> None: ...

    # ---- operators: a Value with a Value or a number gives a new Value ----
    # (`other` is positional-only: Python passes it so, and CPython 3.13 reports it at run time)
    def __add__(self, other: _Operand, /) -> Value: ...
    def __radd__(self, other: _Operand, /) -> Value: ...
    def __sub__(self, other: _Operand, /) -> Value: ...
    def __rsub__(self, other: _Operand, /) -> Value: ...
    def __mul__(self, other: _Operand, /) -> Value: ...
    def __rmul__(self, other: _Operand, /) -> Value: ...
    def __truediv__(self, other: _Operand, /) -> Value: ...
    def __rtruediv__(self, other: _Operand, /) -> Value: ...
    def __pow__(self, other: _Operand, mod: None = None, /) -> Value: ...
    def __rpow__(self, other: _Operand, mod: None = None, /) -> Value: ...
    def __neg__(self) -> Value: ...

    # ---- activations and functions ----
    def relu(self) -> Value: ...
    def tanh(self) -> Value: ...
    def exp(self) -> Value: ...
    def log(self) -> Value: ...
    def sigmoid(self) -> Value: ...

    def backward(self) -> None: ...
    def recompute(self) -> float:
        """Re-evaluate every node under this Value from its leaves' current data; the new data."""
    def zero_grad(self) -> None:
        """Set the grad of every node under this Value (itself and the leaves included) to 0."""
    def __repr__(self) -> str: ...

def dot(ws: Iterable[_Operand], xs: Iterable[_Operand], bias: _Operand) -> Value:
    """bias + w0*x0 + w1*x1 + ... as ONE node ('dot'), summed left to right from bias."""

def neuron_parameters(neurons: Iterable[Any], neuron_type: type[Any],
                      out: list[Value] | None = None) -> list[Value]: ...
def zero_grad_neurons(neurons: Iterable[Any], neuron_type: type[Any]) -> None: ...
def layer(neurons: Iterable[Any], x: Sequence[_Operand], neuron_type: type[Any]) -> list[Any]:
    """[n(x) for n in neurons]; neurons of exactly neuron_type (nn.Neuron) are computed in C with
    the same nodes, numbers and creation order as Neuron.__call__."""

def mlp(layers: Iterable[Any], x: Sequence[_Operand], layer_type: type[Any],
        neuron_type: type[Any]) -> Any:
    """for layer in layers: x = layer(x); layers of exactly layer_type (nn.Layer) are computed in
    C as Layer.__call__ does (their plain Neurons as layer() does), with the same nodes."""

def sum_values(values: Iterable[_Operand], start: _Operand = 0) -> Value:
    """start + v0 + v1 + ... as ONE node ('sum'): the numbers of the builtin sum(values, start)."""

def zero_grads(values: Iterable[Value]) -> None:
    """Set each Value's grad to 0.0, in one C loop."""

def assign(leaves: Iterable[Value], numbers: Iterable[_Number] | Any) -> None:
    """Set leaves[k].data = numbers[k] (numbers: real numbers or a 1-d buffer of doubles)."""

# ---- grad mode (per thread, as torch's) ----
_F = TypeVar("_F", bound=Callable[..., Any])

def is_grad_enabled() -> bool: ...
def _set_grad_enabled(mode: bool) -> bool: ...

_G = TypeVar("_G", bound=_GradMode)

class _GradMode:
    # `@no_grad` without parentheses gives the decorated function (`no_grad(fn)`)
    @overload
    def __new__(cls: type[_G], fn: None = None) -> _G: ...
    @overload
    def __new__(cls, fn: _F) -> _F: ...  # type: ignore[misc]
    def __enter__(self) -> None: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def __call__(self, fn: _F) -> _F: ...

class no_grad(_GradMode):
    """Operators inside it return plain leaves with the forward value and record no graph."""

class enable_grad(_GradMode):
    """Turns recording back on inside no_grad()."""

# ---- classification: numerically stable fused nodes (the max is subtracted before exp) ----
def softmax(values: Iterable[_Operand]) -> list[Value]:
    """[exp(x_i) / sum_j exp(x_j) for each i]: one 'softmax' node per output, over all inputs."""

def log_softmax(values: Iterable[_Operand]) -> list[Value]:
    """[x_i - logsumexp(x) for each i]: one 'log_softmax' node per output, over all inputs."""

def logsumexp(values: Iterable[_Operand]) -> Value:
    """log(exp(x0) + exp(x1) + ...) as ONE node ('logsumexp')."""

def cross_entropy(logits: Iterable[_Operand], target: SupportsIndex) -> Value:
    """logsumexp(logits) - logits[target] as ONE node ('cross_entropy'); gradient p - onehot."""

class _ArenaStats(TypedDict):
    # stub-only name: at run time arena_stats() returns a plain dict with these keys
    live: int
    capacity: int
    high_water: int
    dead_slots: int
    node_size: int
    compactions: int
    topo_fallbacks: int
    bytes_per_node: int
    edges: int
    dead_edges: int
    edge_capacity: int
    bytes: int

def arena_stats() -> _ArenaStats:
    """Statistics of the node arena: live nodes, capacity, high-water mark, memory; and of the
    edge arena (the children of n-ary nodes): edges in use, dead ones, capacity."""

def _rebuild(
    cls: type[Value], data: float, grad: float, label: str, state: dict[str, Any] | None
) -> Value: ...
