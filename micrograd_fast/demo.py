"""micrograd's demo as a program: a tiny MLP learns the two-moons data set.

The pieces (make_moons, svm_loss, train_step) are shared with the benchmarks and the tests; they
take the engine's Value class and an MLP built over that engine, so upstream micrograd fits too.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from types import ModuleType
from collections.abc import Iterator
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


def svm_loss_graph(model: Any, X: Points, y: Sequence[int], Value: Any,
                   alpha: float = 1e-4) -> tuple[Any, list[Any]]:
    """The demo notebook's loss, SVM max-margin loss + alpha * L2, and the model's scores."""
    inputs = [list(map(Value, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * sum((p * p for p in model.parameters()))
    total_loss = data_loss + reg_loss
    return total_loss, scores


def accuracy(scores: Sequence[Any], y: Sequence[int]) -> float:
    """The share of points whose score has the sign of their label."""
    hits = [bool((yi > 0) == (scorei.data > 0)) for yi, scorei in zip(y, scores)]
    return sum(hits) / len(hits)


def svm_loss(model: Any, X: Points, y: Sequence[int], Value: Any,
             alpha: float = 1e-4) -> tuple[Any, float]:
    """The demo notebook's loss: SVM max-margin loss + alpha * L2, and the accuracy."""
    total_loss, scores = svm_loss_graph(model, X, y, Value, alpha)
    return total_loss, accuracy(scores, y)


def learning_rate(k: int, steps: int, base: float = 1.0) -> float:
    """The notebook's schedule: from base down to base / 10, linearly."""
    return base * (1.0 - 0.9 * k / steps)


def train_step(model: Any, X: Points, y: Sequence[int], Value: Any, k: int,
               steps: int, opt: Any = None) -> tuple[float, float]:
    """One step of the notebook's loop (zero_grad, backward, SGD with decaying rate); with an
    optimizer from micrograd_fast.optim, its step() instead of the SGD loop."""
    total_loss, acc = svm_loss(model, X, y, Value)
    if opt is None:
        model.zero_grad()
        total_loss.backward()
        lr = learning_rate(k, steps)
        for p in model.parameters():
            p.data -= lr * p.grad
    else:
        opt.zero_grad()
        total_loss.backward()
        opt.step()
    return total_loss.data, acc


def replayed_steps(model: Any, X: Points, y: Sequence[int], Value: Any, steps: int,
                   opt: Any, schedule: Any = None) -> Iterator[tuple[float, float]]:
    """The same training, with the loss's graph built once and replayed: per step
    recompute() + zero_grad() + backward() + step(), all in C on the compiled engine.
    Yields each step's (loss, accuracy); schedule(k) -> lr, if given, sets opt.lr."""
    total_loss, scores = svm_loss_graph(model, X, y, Value)
    for k in range(steps):
        if k:
            total_loss.recompute()  # the new parameters' loss, through the same graph
        acc = accuracy(scores, y)
        opt.zero_grad()
        total_loss.backward()
        if schedule is not None:
            opt.lr = schedule(k)
        opt.step()
        yield total_loss.data, acc


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


def evaluating(engine_name: str) -> contextlib.AbstractContextManager[Any]:
    """The engine's no_grad() (upstream micrograd has none: a context that does nothing)."""
    if engine_name == "fast":
        from . import engine

        return engine.no_grad()
    if engine_name == "reference":
        from . import reference

        return reference.no_grad()
    return contextlib.nullcontext()


def _progress(steps: int, enabled: bool) -> Any:
    """tqdm's bar when tqdm is installed and wanted, else None (plain lines are printed)."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=steps, unit="step", dynamic_ncols=True, file=sys.stdout)


OPTIMIZERS = ("sgd", "adam")
ADAM_LR = 0.05  # Adam's base rate in the demo (decayed by the same schedule as SGD's 1.0)


def make_optimizer(name: str, model: Any) -> Any:
    """micrograd_fast.optim's SGD (the notebook's update) or Adam over the model's parameters."""
    from . import optim

    if name == "sgd":
        return optim.SGD(model.parameters(), lr=1.0)
    return optim.Adam(model.parameters(), lr=ADAM_LR)


def train(model: Any, X: Points, y: Sequence[int], Value: Any, steps: int,
          progress: bool = True, optimizer: Optional[str] = None,
          replay: bool = False) -> History:
    """The notebook's loop; returns the per-step (loss, accuracy) history. optimizer: 'sgd' or
    'adam' from micrograd_fast.optim (None: the notebook's own SGD loop); replay: build the
    loss's graph once and replay it each step (with optim.SGD when optimizer is None)."""
    history: History = []
    bar = _progress(steps, progress)
    if replay and optimizer is None:
        optimizer = "sgd"
    opt = make_optimizer(optimizer, model) if optimizer else None
    base = ADAM_LR if optimizer == "adam" else 1.0

    def schedule(k: int) -> float:
        return learning_rate(k, steps, base)

    if replay:
        stepper: Iterator[tuple[float, float]] = replayed_steps(
            model, X, y, Value, steps, opt, schedule)
    else:
        stepper = (train_step_with(model, X, y, Value, k, steps, opt, schedule)
                   for k in range(steps))
    for k, (loss, acc) in enumerate(stepper):
        history.append((loss, acc))
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.0%}", refresh=False)
            bar.update(1)
        elif progress and (k % 10 == 0 or k == steps - 1):
            print(f"step {k:4d} loss {loss:.6f}, accuracy {acc:.0%}")
    if bar is not None:
        bar.close()
    return history


def train_step_with(model: Any, X: Points, y: Sequence[int], Value: Any, k: int, steps: int,
                    opt: Any, schedule: Any) -> tuple[float, float]:
    if opt is not None:
        opt.lr = schedule(k)
    return train_step(model, X, y, Value, k, steps, opt)


PLOT_NEEDS = "--plot needs matplotlib: pip install 'micrograd_fast[plot]'"


def pyplot() -> Any:
    """matplotlib.pyplot drawing to files (the Agg backend); without matplotlib, SystemExit
    saying how to install it. (The demos' and the benchmark's plots.)"""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit(PLOT_NEEDS) from None
    return plt


def plot(path: str, model: Any, X: Points, y: Sequence[int], Value: Any,
         history: History) -> None:
    """PNG with the decision boundary over the data and the loss/accuracy curves."""
    plt = pyplot()
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


def check_plot_path(parser: argparse.ArgumentParser, path: Optional[str]) -> Optional[str]:
    """--plot's path, checked before any work is done: its folder exists, matplotlib is there
    and writes its format. A path without an extension gets .png (what matplotlib would write),
    so the path reported afterwards is the file written."""
    if not path:
        return path
    check_output_path(parser, "--plot", path)
    if os.path.isdir(path):
        parser.error(f"--plot {path}: that is a folder; give a file name, such as "
                     f"{os.path.join(path, 'plot.png')}")
    try:
        pyplot()
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except SystemExit:
        parser.error(PLOT_NEEDS)
    extension = os.path.splitext(path)[1][1:].lower()
    if not extension:
        return path + ".png"
    formats = FigureCanvasAgg.get_supported_filetypes()
    if extension not in formats:
        parser.error(f"--plot {path}: matplotlib does not write .{extension} files (it writes "
                     f"{', '.join(sorted(formats))})")
    return path


def check_output_path(parser: argparse.ArgumentParser, option: str, path: Optional[str]) -> None:
    """An output file's folder must exist: found before the work, not after it."""
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            parser.error(f"{option} {path}: there is no folder {folder}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m micrograd_fast demo",
        description="micrograd's demo: an MLP(2, [16, 16, 1]) learns the two-moons data set "
        "with an SVM max-margin loss, L2 regularization and SGD with a decaying learning rate.",
    )
    parser.add_argument("--steps", type=int, default=100, help="training steps (default 100)")
    parser.add_argument("--seed", type=int, default=1337,
                        help="seed for the data and the weights (default 1337)")
    parser.add_argument("--samples", type=int, default=100, help="data points (default 100)")
    parser.add_argument("--engine", choices=ENGINES, default="fast",
                        help="fast (this package), reference (pure Python) or micrograd (upstream)")
    parser.add_argument("--plot", metavar="PATH", help="save a PNG of the decision boundary and loss")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or step lines")
    parser.add_argument("--optim", choices=OPTIMIZERS, default="sgd",
                        help="sgd: the notebook's update, learning rate 1.0 decaying to 0.1 "
                        f"(default); adam: micrograd_fast.optim.Adam, rate {ADAM_LR} decaying "
                        "the same way")
    parser.add_argument("--replay", action="store_true",
                        help="build the loss's graph once and replay it each step (recompute, "
                        "zero_grad, backward, optimizer step: no Python per node); the same "
                        "numbers as building it anew")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.samples < 2:
        parser.error("--samples must be at least 2 (one point of each moon)")
    args.plot = check_plot_path(parser, args.plot)
    if args.engine == "micrograd" and (args.replay or args.optim != "sgd"):
        parser.error("--replay and --optim adam need this package's engines (fast, reference)")

    Value, nn = load_engine(args.engine)
    X, y = make_moons(n_samples=args.samples, seed=args.seed)
    random.seed(args.seed)
    model = nn.MLP(2, [16, 16, 1])
    if args.engine == "fast":
        from .engine import BACKEND

        # (the default engine is the reference when MICROGRAD_FAST_PURE_PYTHON is set)
        backend = " (cython)" if BACKEND == "cython" else \
            " (pure Python: MICROGRAD_FAST_PURE_PYTHON is set)"
    else:
        backend = ""
    print(f"engine {args.engine}{backend}: MLP(2, [16, 16, 1]) with {len(model.parameters())} "
          f"parameters, {len(X)} points, {args.steps} steps")
    if not args.no_progress:  # the progress bar's import (~0.1 s) is not training time
        with contextlib.suppress(ImportError):
            import tqdm  # noqa: F401
    start = time.perf_counter()
    optimizer = None if args.optim == "sgd" and not args.replay else args.optim
    history = train(model, X, y, Value, args.steps, progress=not args.no_progress,
                    optimizer=optimizer, replay=args.replay)
    elapsed = time.perf_counter() - start
    loss, _ = history[-1]
    with evaluating(args.engine):  # no graph needed: plain leaves, no nodes kept
        final_loss, final_acc = svm_loss(model, X, y, Value)
    print(f"final loss {final_loss.data:.6f}, accuracy {final_acc:.0%} "
          f"(last step's loss {loss:.6f})")
    print(f"time {elapsed:.3f} s, {elapsed / args.steps * 1e3:.2f} ms per step")
    if args.plot:
        with evaluating(args.engine):
            plot(args.plot, model, X, y, Value, history)
        print(f"plot saved to {args.plot}")
    return 0
