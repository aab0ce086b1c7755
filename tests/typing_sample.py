"""A user's script, written against micrograd_fast's typed API: `mypy --strict` must accept it.

tests/test_typing.py type-checks it (and also runs it, so it stays a working program). It uses
the API the way micrograd's README, the lecture and the demo do: Value arithmetic, backward,
the lecture's hand-made nodes with a custom _backward, and an nn.MLP training loop.
"""
from __future__ import annotations

import random
from fractions import Fraction

import micrograd_fast
from micrograd_fast import BACKEND, dot, draw_dot, no_grad, sum_values
from micrograd_fast.engine import Value
from micrograd_fast.nn import MLP, Module, Neuron


def readme_example() -> tuple[float, float, float]:
    """micrograd's README expression: Value with Value, int and float on either side."""
    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    g.backward()
    return g.data, a.grad, b.grad


def functions() -> list[float]:
    """The activations and functions beyond micrograd, a Value exponent, the fused helpers."""
    x = Value(0.5, label="x")
    y = Value(1.5, label="y")
    outs: list[Value] = [x.tanh(), x.exp(), y.log(), x.sigmoid(), x**y, 2**x, -x, 1 - x, 3 / y]
    total = sum_values(outs, start=x * y)
    total = total + dot([x, y], [y, 2.0], bias=0.25)
    total.backward()
    children: set[Value] = total._prev
    assert len(children) == 2 and total._op == "+"
    return [total.data, x.grad, y.grad]


def lecture_node() -> float:
    """The lecture's style: a node built by hand, its backward assigned as a closure."""
    a = Value(3.0, label="a")
    out = Value(a.data**2, (a,), "square")

    def _backward() -> None:
        a.grad += 2 * a.data * out.grad

    out._backward = _backward
    out.backward()
    return a.grad


def svm_loss(model: MLP, X: list[list[float]], y: list[int]) -> tuple[Value, float]:
    """The demo notebook's max-margin loss with L2 regularization, and the accuracy."""
    inputs = [[Value(xi) for xi in row] for row in X]
    scores: list[Value] = [model(row) for row in inputs]
    losses = [(1 + -yi * score).relu() for yi, score in zip(y, scores)]
    data_loss = sum_values(losses) * (1.0 / len(losses))
    reg_loss = 1e-4 * sum_values(p * p for p in model.parameters())
    accuracy = [(yi > 0) == (score.data > 0) for yi, score in zip(y, scores)]
    return data_loss + reg_loss, sum(accuracy) / len(accuracy)


def train(steps: int = 5) -> list[float]:
    """The demo's SGD loop on a few points; returns the loss after each step."""
    random.seed(1337)
    model = MLP(2, [8, 8, 1])
    X = [[random.uniform(-1, 1), random.uniform(-1, 1)] for _ in range(16)]
    y = [1 if a * b > 0 else -1 for a, b in X]
    history: list[float] = []
    for k in range(steps):
        loss, _accuracy = svm_loss(model, X, y)
        model.zero_grad()
        loss.backward()
        learning_rate = 1.0 - 0.9 * k / steps
        for p in model.parameters():
            p.data -= learning_rate * p.grad
        history.append(loss.data)
    return history


def count_parameters(module: Module) -> int:
    return len(module.parameters())


def check_gradients() -> bool:
    """gradcheck: backward's gradients against central finite differences."""
    return micrograd_fast.gradcheck(lambda u, v: (u * v + v**3).tanh(), [0.3, -0.7])


def picture() -> str:
    """The lecture's graph picture (needs the graphviz package): its DOT source."""
    x = Value(2.0, label="x")
    w = Value(-3.0, label="w")
    n = x * w
    n.label = "n"
    o = n.tanh()
    o.backward()
    source: str = draw_dot(o, format="svg", rankdir="TB").source
    return source


@no_grad()  # (the bare `@no_grad` types as well with mypy 2; mypy 1.x, which Python 3.9 gets,
def evaluate(model: MLP, x: list[float]) -> float:  # sees the class instance there)
    # a Fraction is a real operand
    out: Value = model(x) + Fraction(1, 4)
    return out.data


def main() -> None:
    g, da, db = readme_example()
    print(f"backend {BACKEND}, version {micrograd_fast.__version__}")
    print(f"{g:.4f} {da:.4f} {db:.4f}")  # 24.7041 138.8338 645.5773
    print(functions(), lecture_node())
    print(count_parameters(Neuron(3)), count_parameters(MLP(2, [16, 16, 1])))
    print(train())
    print(check_gradients())
    print(picture())
    random.seed(3)
    print(evaluate(MLP(2, [4, 1]), [0.5, -1.0]))


if __name__ == "__main__":
    main()
