"""micrograd's demo as a program: a tiny MLP learns the two-moons data set.

The pieces (make_moons, svm_loss, train_step) are shared with the benchmarks and the tests; they
take the engine's Value class and an MLP built over that engine, so upstream micrograd fits too.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Optional

# The demo runs on any engine -- ours, the reference or upstream micrograd (untyped) -- so a
# model, a Value class and a loss are typed Any here; X is a list of [x0, x1], y of -1/+1 labels.
Points = Sequence[Sequence[float]]
History = list[tuple[float, float]]


def make_moons(n_samples: int = 100, noise: float = 0.1,
               seed: int = 1337) -> tuple[list[list[float]], list[int]]:
    """Two interleaving half circles, as sklearn's make_moons, made without numpy or downloads.

    Returns (X, y): X a list of [x0, x1] floats, y a list of labels -1 / +1 (the SVM demo's).
    """
    rng = random.Random(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    X: list[list[float]] = []
    y: list[int] = []
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


def svm_loss(model: Any, X: Points, y: Sequence[int], Value: Any,
             alpha: float = 1e-4) -> tuple[Any, float]:
    """The demo notebook's loss: SVM max-margin loss + alpha * L2, and the accuracy."""
    inputs = [list(map(Value, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * sum((p * p for p in model.parameters()))
    total_loss = data_loss + reg_loss
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores)]
    return total_loss, sum(accuracy) / len(accuracy)


def train_step(model: Any, X: Points, y: Sequence[int], Value: Any, k: int,
               steps: int) -> tuple[float, float]:
    """One step of the notebook's loop (zero_grad, backward, SGD with decaying rate)."""
    total_loss, acc = svm_loss(model, X, y, Value)
    model.zero_grad()
    total_loss.backward()
    learning_rate = 1.0 - 0.9 * k / steps
    for p in model.parameters():
        p.data -= learning_rate * p.grad
    return total_loss.data, acc


ENGINES = ("fast", "reference", "micrograd")


def load_engine(name: str) -> tuple[Any, ModuleType]:
    """(Value, nn module) for an engine name: fast (the active engine), reference, micrograd."""
    if name == "fast":
        from . import engine, nn

        return engine.Value, nn
    if name == "reference":
        from . import nn, reference

        return reference.Value, nn.over(reference)
    try:
        import micrograd.engine
        import micrograd.nn
    except ImportError:
        raise SystemExit("--engine micrograd needs upstream micrograd: pip install micrograd") from None
    return micrograd.engine.Value, micrograd.nn


def _progress(steps: int, enabled: bool) -> Any:
    """tqdm's bar when tqdm is installed and wanted, else None (plain lines are printed)."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=steps, unit="step", dynamic_ncols=True, file=sys.stdout)


def train(model: Any, X: Points, y: Sequence[int], Value: Any, steps: int,
          progress: bool = True) -> History:
    """The notebook's loop; returns the per-step (loss, accuracy) history."""
    history: History = []
    bar = _progress(steps, progress)
    for k in range(steps):
        loss, acc = train_step(model, X, y, Value, k, steps)
        history.append((loss, acc))
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.0%}", refresh=False)
            bar.update(1)
        elif progress and (k % 10 == 0 or k == steps - 1):
            print(f"step {k:4d} loss {loss:.6f}, accuracy {acc:.0%}")
    if bar is not None:
        bar.close()
    return history


def plot(path: str, model: Any, X: Points, y: Sequence[int], Value: Any,
         history: History) -> None:
    """PNG with the decision boundary over the data and the loss/accuracy curves."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'micrograd_fast[plot]'") from None
    h = 0.05
    xs0 = [p[0] for p in X]
    xs1 = [p[1] for p in X]
    x_min, x_max = min(xs0) - 1, max(xs0) + 1
    y_min, y_max = min(xs1) - 1, max(xs1) + 1
    gx = [x_min + i * h for i in range(int((x_max - x_min) / h) + 1)]
    gy = [y_min + j * h for j in range(int((y_max - y_min) / h) + 1)]
    Z = [[1.0 if model([Value(a), Value(b)]).data > 0 else 0.0 for a in gx] for b in gy]

    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax.contourf(gx, gy, Z, cmap=plt.cm.Spectral, alpha=0.8)
    ax.scatter(xs0, xs1, c=y, s=30, cmap=plt.cm.Spectral, edgecolors="k")
    ax.set_xlim(x_min, x_max)
    ax.set_ylim(y_min, y_max)
    ax.set_title("decision boundary")
    steps = range(len(history))
    ax_loss.plot(steps, [loss for loss, _ in history], label="loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_acc = ax_loss.twinx()
    ax_acc.plot(steps, [acc for _, acc in history], color="tab:orange", label="accuracy")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.05)
    ax_loss.set_title("training")
    fig.legend(loc="center right", bbox_to_anchor=(0.9, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m micrograd_fast demo",
        description="micrograd's demo: an MLP(2, [16, 16, 1]) learns the two-moons data set "
        "with an SVM max-margin loss, L2 regularization and SGD with a decaying learning rate.",
    )
    parser.add_argument("--steps", type=int, default=100, help="training steps (default 100)")
    parser.add_argument("--seed", type=int, default=1337, help="seed for the data and the weights")
    parser.add_argument("--samples", type=int, default=100, help="data points (default 100)")
    parser.add_argument("--engine", choices=ENGINES, default="fast",
                        help="fast (this package), reference (pure Python) or micrograd (upstream)")
    parser.add_argument("--plot", metavar="PATH", help="save a PNG of the decision boundary and loss")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or step lines")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    Value, nn = load_engine(args.engine)
    X, y = make_moons(n_samples=args.samples, seed=args.seed)
    random.seed(args.seed)
    model = nn.MLP(2, [16, 16, 1])
    if args.engine == "fast":
        from .engine import BACKEND

        backend = f" ({BACKEND})"
    else:
        backend = ""
    print(f"engine {args.engine}{backend}: MLP(2, [16, 16, 1]) with {len(model.parameters())} "
          f"parameters, {len(X)} points, {args.steps} steps")
    start = time.perf_counter()
    history = train(model, X, y, Value, args.steps, progress=not args.no_progress)
    elapsed = time.perf_counter() - start
    loss, _ = history[-1]
    final_loss, final_acc = svm_loss(model, X, y, Value)
    print(f"final loss {final_loss.data:.6f}, accuracy {final_acc:.0%} "
          f"(last step's loss {loss:.6f})")
    print(f"time {elapsed:.3f} s, {elapsed / args.steps * 1e3:.2f} ms per step")
    if args.plot:
        plot(args.plot, model, X, y, Value, history)
        print(f"plot saved to {args.plot}")
    return 0
