"""micrograd's demo as a program: a tiny MLP learns the two-moons data set.

The pieces (make_moons, svm_loss, train_step) are shared with the benchmarks and the tests; they
take the engine's Value class and an MLP built over that engine, so upstream micrograd fits too.
"""
import math
import random


def make_moons(n_samples=100, noise=0.1, seed=1337):
    """Two interleaving half circles, as sklearn's make_moons, made without numpy or downloads.

    Returns (X, y): X a list of [x0, x1] floats, y a list of labels -1 / +1 (the SVM demo's).
    """
    rng = random.Random(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    X, y = [], []
    for i in range(n_out):
        t = math.pi * i / max(n_out - 1, 1)
        X.append([math.cos(t), math.sin(t)])
        y.append(-1)
    for i in range(n_in):
        t = math.pi * i / max(n_in - 1, 1)
        X.append([1 - math.cos(t), 1 - math.sin(t) - 0.5])
        y.append(1)
    order = list(range(n_samples))
    rng.shuffle(order)
    X = [[a + rng.gauss(0.0, noise), b + rng.gauss(0.0, noise)] for a, b in (X[i] for i in order)]
    y = [y[i] for i in order]
    return X, y


def svm_loss(model, X, y, Value, alpha=1e-4):
    """The demo notebook's loss: SVM max-margin loss + alpha * L2, and the accuracy."""
    inputs = [list(map(Value, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * sum((p * p for p in model.parameters()))
    total_loss = data_loss + reg_loss
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores)]
    return total_loss, sum(accuracy) / len(accuracy)


def train_step(model, X, y, Value, k, steps):
    """One step of the notebook's loop (zero_grad, backward, SGD with decaying rate)."""
    total_loss, acc = svm_loss(model, X, y, Value)
    model.zero_grad()
    total_loss.backward()
    learning_rate = 1.0 - 0.9 * k / steps
    for p in model.parameters():
        p.data -= learning_rate * p.grad
    return total_loss.data, acc


def main(argv=None):
    raise SystemExit("demo CLI: not built yet")
