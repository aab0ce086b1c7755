"""micrograd's nn -- Module, Neuron, Layer, MLP -- written once, over the active engine."""
import random

from . import engine as _engine  # looked up at call time, so over() can swap it


class Module:

    def zero_grad(self):
        for p in self.parameters():
            p.grad = 0

    def parameters(self):
        return []


class Neuron(Module):

    def __init__(self, nin, nonlin=True):
        self.w = [_engine.Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = _engine.Value(0)
        self.nonlin = nonlin

    def __call__(self, x):
        # one fused node for b + w0*x0 + w1*x1 + ..., summed left to right from b: the numbers
        # of micrograd's sum((wi*xi for wi, xi in zip(self.w, x)), self.b) with 1 node, not 2n
        act = _engine.dot(self.w, x, self.b)
        return act.relu() if self.nonlin else act

    def parameters(self):
        return self.w + [self.b]

    def __repr__(self):
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(Module):

    def __init__(self, nin, nout, **kwargs):
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

    def __call__(self, x):
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self):
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self):
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):

    def __init__(self, nin, nouts):
        sz = [nin] + nouts
        self.layers = [Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1) for i in range(len(nouts))]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self):
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"


def over(engine):
    """This module again, bound to another engine module (e.g. micrograd_fast.reference).

    Tests and benchmarks use it to run both engines in one process:
    ``ref_nn = micrograd_fast.nn.over(micrograd_fast.reference)``.
    """
    import importlib.util

    spec = importlib.util.find_spec(__name__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._engine = engine
    return module
