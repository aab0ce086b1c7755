"""micrograd's nn -- Module, Neuron, Layer, MLP -- written once, over the active engine."""
from __future__ import annotations

import random
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Union

from . import engine as _engine  # looked up at call time, so over() can swap it
from .engine import Value  # as micrograd's nn has it: nn.Value, `from micrograd.nn import Value`

# what `from micrograd.nn import *` gives with upstream micrograd (whose nn has no __all__, so its
# `import random` comes along: scripts written against it may use `random` after the star)
__all__ = ["Value", "Module", "Neuron", "Layer", "MLP", "random"]

if TYPE_CHECKING:
    # a layer's input: Values, or plain numbers for the first layer (as micrograd)
    Inputs = Sequence[Union[Value, float]]


class Module:

    def zero_grad(self) -> None:
        params = self.parameters()  # (an overridden parameters() says what to zero)
        if not isinstance(params, (list, tuple)):
            params = list(params)
        try:
            _engine.zero_grads(params)  # one C loop
        except TypeError:  # not all Values (then none is zeroed): micrograd's own loop, which
            for p in params:  # sets p.grad = 0 on whatever takes it (a script's own parameter
                p.grad = 0  # objects) and raises on what does not (a float: AttributeError)

    def parameters(self) -> list[Value]:
        return []


ACTIVATIONS = ('relu', 'tanh', 'sigmoid')  # a Neuron's act; micrograd's is relu
_ACT_NAMES = {'relu': 'ReLU', 'tanh': 'Tanh', 'sigmoid': 'Sigmoid'}


class Neuron(Module):
    act = 'relu'  # class default: Neurons pickled before `act` existed are ReLU neurons

    def __init__(self, nin: int, nonlin: bool = True, act: str = 'relu') -> None:
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}: act is 'relu', 'tanh' or 'sigmoid'")
        self.w = [_engine.Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = _engine.Value(0)
        self.nonlin = nonlin
        self.act = act

    def __call__(self, x: Inputs) -> Value:
        # one fused node for b + w0*x0 + w1*x1 + ..., summed left to right from b: the numbers
        # of micrograd's sum((wi*xi for wi, xi in zip(self.w, x)), self.b) with 1 node, not 2n
        act = _engine.dot(self.w, x, self.b)
        if not self.nonlin:
            return act
        if self.act == 'relu':
            return act.relu()
        if self.act == 'tanh':
            return act.tanh()
        if self.act == 'sigmoid':
            return act.sigmoid()
        raise ValueError(f"unknown activation {self.act!r}")  # as the engine's layer()

    def parameters(self) -> list[Value]:
        return self.w + [self.b]

    def __repr__(self) -> str:
        kind = _ACT_NAMES.get(self.act, self.act) if self.nonlin else 'Linear'
        return f"{kind}Neuron({len(self.w)})"


_neuron_call = Neuron.__call__
_neuron_parameters = Neuron.parameters


class Layer(Module):

    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

    # Any: a Value when the layer has one neuron, else a list of Values (as micrograd), so that
    # both `model(x).relu()` and `for v in layer(x)` type-check in users' code
    def __call__(self, x: Inputs) -> Any:
        if Neuron.__call__ is _neuron_call:  # the engine runs plain Neurons itself, same nodes
            out = _engine.layer(self.neurons, x, Neuron)
        else:
            out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        if Neuron.parameters is _neuron_parameters:  # the engine reads plain Neurons itself
            return _engine.neuron_parameters(self.neurons, Neuron)
        return [p for n in self.neurons for p in n.parameters()]

    def zero_grad(self) -> None:
        if (type(self).parameters is Layer.parameters and Neuron.parameters is _neuron_parameters
                and "parameters" not in self.__dict__):
            try:
                _engine.zero_grad_neurons(self.neurons, Neuron)  # no parameter list is built
            except TypeError:  # not all Values (then none is zeroed): what Module's does
                super().zero_grad()
        else:  # an overridden parameters() says what to zero
            super().zero_grad()

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


_layer_parameters = Layer.parameters
_layer_call = Layer.__call__


class MLP(Module):

    def __init__(self, nin: int, nouts: list[int], act: str = 'relu') -> None:
        sz = [nin] + nouts
        # act: the hidden layers' activation; the last layer is linear, as in micrograd
        self.layers = [Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1, act=act)
                       for i in range(len(nouts))]

    def __call__(self, x: Inputs) -> Any:  # Any: as Layer.__call__
        if Layer.__call__ is _layer_call and Neuron.__call__ is _neuron_call:
            return _engine.mlp(self.layers, x, Layer, Neuron)  # plain Layers without a Python call
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Value]:
        params: list[Value] = []
        plain = Layer.parameters is _layer_parameters and Neuron.parameters is _neuron_parameters
        for layer in self.layers:  # no Python step per parameter
            # the engine appends a plain Layer's itself (one without a parameters() of its own)
            if plain and type(layer) is Layer and "parameters" not in layer.__dict__:
                _engine.neuron_parameters(layer.neurons, Neuron, params)
            else:
                params.extend(layer.parameters())
        return params

    def zero_grad(self) -> None:
        if type(self).parameters is MLP.parameters and "parameters" not in self.__dict__:
            for layer in self.layers:
                layer.zero_grad()
        else:  # an overridden parameters() says what to zero
            super().zero_grad()

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"


def over(engine: ModuleType) -> ModuleType:
    """This module again, bound to another engine module (e.g. micrograd_fast.reference).

    Tests and benchmarks use it to run both engines in one process:
    ``ref_nn = micrograd_fast.nn.over(micrograd_fast.reference)``.
    """
    import importlib.util

    spec = importlib.util.find_spec(__name__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    setattr(module, "_engine", engine)
    setattr(module, "Value", engine.Value)
    return module
