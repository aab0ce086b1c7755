"""The course's next step on real data: an MLP learns to read handwritten digits.

scikit-learn's bundled 8x8 digits (1,797 images, no download), pixels scaled to [0, 1], a
seeded train/test split, ``MLP(64, [32, 10])`` trained on minibatches with ``cross_entropy``
(the mean over the batch), then the test accuracy and the time per epoch.

On upstream micrograd (``--engine micrograd``), which has no exp/log, the loss is a multi-class
hinge loss written with relu alone; that engine and the reference one run one short epoch by
default and print how long a full one would take.
"""
from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Optional

from .demo import check_plot_path, pyplot

# The demo runs on any engine -- ours, the reference or upstream micrograd (untyped) -- so
# models, Values and losses are typed Any here.
Rows = list[list[float]]

ENGINES = ("fast", "reference", "micrograd")
OPTIMIZERS = ("sgd", "adam")
DEFAULT_LR = {"sgd": 0.15, "adam": 3e-3}
MISSING_SKLEARN = ('the digits demo needs scikit-learn (its bundled 8x8 digits data set): '
                   'pip install "micrograd_fast[demo]"')


@dataclass
class Data:
    """The split: rows of 64 pixels in [0, 1], labels 0-9."""
    X_train: Rows
    y_train: list[int]
    X_test: Rows
    y_test: list[int]


def load_data(seed: int = 1337, test_fraction: float = 0.2) -> Data:
    """scikit-learn's 8x8 digits, pixels / 16, split by a seeded shuffle. ImportError (with
    MISSING_SKLEARN as its message) when scikit-learn is not installed."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(MISSING_SKLEARN) from exc
    digits = load_digits()
    X = [[float(v) / 16.0 for v in row] for row in digits.data.tolist()]
    y = [int(t) for t in digits.target.tolist()]
    order = list(range(len(X)))
    random.Random(seed).shuffle(order)
    n_test = round(len(X) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return Data([X[i] for i in train], [y[i] for i in train], [X[i] for i in test],
                [y[i] for i in test])


# ---- the engines: Value, nn, the loss of one sample and the mean over a batch -------------------

@dataclass
class Engine:
    name: str
    Value: Any
    nn: Any
    loss: Callable[[Any, int], Any]          # (scores of one sample, its label) -> Value
    mean: Callable[[list[Any]], Any]         # the batch's losses -> their mean
    no_grad: Callable[[], Any] = contextlib.nullcontext  # forward without a graph, if supported
    loss_name: str = "cross-entropy"


def hinge_loss(scores: Sequence[Any], target: int) -> Any:
    """Multi-class hinge loss (Weston-Watkins) with relu alone: sum over j != target of
    relu(1 + s_j - s_target). For upstream micrograd, which has no exp/log."""
    s_t = scores[target]
    return sum((1 + s_j - s_t).relu() for j, s_j in enumerate(scores) if j != target)


def load_engine(name: str) -> Engine:
    if name == "micrograd":
        from .demo import load_engine as load_demo_engine

        mg_value, mg_nn = load_demo_engine("micrograd")
        return Engine(name, mg_value, mg_nn, hinge_loss,
                      lambda losses: sum(losses) * (1.0 / len(losses)),
                      loss_name="multi-class hinge (relu only: micrograd has no exp/log)")
    from . import engine as fast, nn as fast_nn, reference

    module: ModuleType
    nn: Any
    if name == "fast":
        module, nn = fast, fast_nn
    elif name == "reference":
        module, nn = reference, fast_nn.over(reference)
    else:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {name!r}")
    sum_values = module.sum_values
    return Engine(name, module.Value, nn, module.cross_entropy,
                  lambda losses: sum_values(losses) / len(losses),
                  getattr(module, "no_grad", contextlib.nullcontext))


# ---- optimizers -------------------------------------------------------------------------------

class PlainSGD:
    """p.data -= lr * p.grad over upstream micrograd's Values, which micrograd_fast.optim (C
    loops over our own nodes) does not take; on our engines optim.SGD gives the same numbers."""

    def __init__(self, params: list[Any], lr: float) -> None:
        self.params = params
        self.lr = lr

    def step(self) -> None:
        lr = self.lr
        for p in self.params:
            p.data -= lr * p.grad


def make_optimizer(name: str, params: list[Any], lr: float) -> Any:
    from . import optim

    try:
        return optim.SGD(params, lr=lr) if name == "sgd" else optim.Adam(params, lr=lr)
    except TypeError:  # upstream micrograd's Values
        if name != "sgd":
            raise SystemExit("--optim adam runs on micrograd_fast's engines (fast, reference); "
                             "use --optim sgd with --engine micrograd") from None
        return PlainSGD(params, lr)


# ---- training and evaluation ------------------------------------------------------------------

@dataclass
class History:
    batch_loss: list[float] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)  # on the batches seen in the epoch
    test_acc: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)  # training only, evaluation excluded
    batches_per_epoch: int = 0
    predictions: list[int] = field(default_factory=list)  # on the test set, after the last epoch


def argmax(scores: Sequence[Any]) -> int:
    best = 0
    for j in range(1, len(scores)):
        if scores[j].data > scores[best].data:
            best = j
    return best


def evaluate(engine: Engine, model: Any, inputs: list[Any],
             y: Sequence[int]) -> tuple[float, list[int]]:
    """(accuracy, predictions): a forward pass per sample, no graph kept."""
    predictions = []
    with engine.no_grad():
        for x in inputs:
            predictions.append(argmax(model(x)))  # the graph goes with the scores
    correct = sum(p == t for p, t in zip(predictions, y))
    return correct / max(len(y), 1), predictions


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="batch", dynamic_ncols=True, file=sys.stdout)


def train(engine: Engine, model: Any, data: Data, epochs: int, batch: int, optimizer: Any,
          seed: int, max_batches: Optional[int] = None, progress: bool = True,
          decay: bool = True) -> History:
    """Minibatch training: for each batch the mean loss, zero_grad, backward, step; the test
    accuracy after each epoch. With decay, the rate falls linearly to a tenth over the epochs."""
    V = engine.Value
    train_inputs = [[V(v) for v in row] for row in data.X_train]  # leaves made once, reused
    test_inputs = [[V(v) for v in row] for row in data.X_test]
    order = list(range(len(train_inputs)))
    rng = random.Random(seed)
    n_batches = (len(order) + batch - 1) // batch
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    history = History(batches_per_epoch=n_batches)
    lr0 = optimizer.lr if decay else None
    bar = _progress(epochs * n_batches, progress)
    test = "-"  # the test accuracy, once an epoch is done
    for epoch in range(epochs):
        rng.shuffle(order)
        if lr0 is not None:
            optimizer.lr = lr0 * (1.0 - 0.9 * epoch / epochs)
        start = time.perf_counter()
        total, correct, seen = 0.0, 0, 0
        for k in range(n_batches):
            idx = order[k * batch:(k + 1) * batch]
            losses = []
            for i in idx:
                scores = model(train_inputs[i])
                losses.append(engine.loss(scores, data.y_train[i]))
                correct += argmax(scores) == data.y_train[i]
            loss = engine.mean(losses)
            model.zero_grad()  # ours: one C loop
            loss.backward()
            optimizer.step()
            history.batch_loss.append(loss.data)
            total += loss.data
            seen += len(idx)
            if bar is not None:
                bar.set_postfix_str(f"epoch {epoch + 1}, loss {loss.data:.4f}, train acc "
                                    f"{correct / seen:.1%}, test acc {test}", refresh=False)
                bar.update(1)
        history.epoch_time.append(time.perf_counter() - start)
        history.epoch_loss.append(total / n_batches)
        history.train_acc.append(correct / seen)
        test_acc, history.predictions = evaluate(engine, model, test_inputs, data.y_test)
        history.test_acc.append(test_acc)
        test = f"{test_acc:.1%}"
        if bar is not None:
            bar.set_postfix_str(f"epoch {epoch + 1}, loss {total / n_batches:.4f}, train acc "
                                f"{correct / seen:.1%}, test acc {test}")
        elif progress:
            print(f"epoch {epoch + 1:3d}  loss {total / n_batches:.4f}  train acc "
                  f"{correct / seen:.1%}  test acc {test_acc:.1%}  "
                  f"({history.epoch_time[-1]:.2f} s)")
    if bar is not None:
        bar.close()
    return history


# ---- the picture ------------------------------------------------------------------------------

def plot(path: str, history: History, data: Data, predictions: list[int]) -> None:
    """PNG: loss and accuracy curves, the test confusion matrix, misclassified test digits."""
    plt = pyplot()
    wrong = [i for i, (p, t) in enumerate(zip(predictions, data.y_test)) if p != t]
    shown = wrong[:24]
    fig = plt.figure(figsize=(15, 5.2))
    grid = fig.add_gridspec(1, 3, width_ratios=[1.15, 1.0, 1.1], wspace=0.3)

    ax_loss = fig.add_subplot(grid[0])
    n = history.batches_per_epoch
    ax_loss.plot([(k + 1) / n for k in range(len(history.batch_loss))], history.batch_loss,
                 color="tab:blue", alpha=0.35, lw=0.8, label="batch loss")
    epochs = list(range(1, len(history.epoch_loss) + 1))
    ax_loss.plot(epochs, history.epoch_loss, "o-", color="tab:blue", ms=3, label="epoch mean loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_acc = ax_loss.twinx()
    ax_acc.plot(epochs, history.train_acc, "s-", color="tab:green", ms=3, label="train accuracy")
    ax_acc.plot(epochs, history.test_acc, "^-", color="tab:orange", ms=3, label="test accuracy")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.02)
    lines = ax_loss.get_legend_handles_labels()
    more = ax_acc.get_legend_handles_labels()
    ax_acc.legend(lines[0] + more[0], lines[1] + more[1], loc="center right", fontsize=8,
                  framealpha=0.95)
    final = history.test_acc[-1] if history.test_acc else float("nan")
    ax_loss.set_title(f"training (test accuracy {final:.1%})")

    ax_cm = fig.add_subplot(grid[1])
    cm = [[0] * 10 for _ in range(10)]
    for p, t in zip(predictions, data.y_test):
        cm[t][p] += 1
    ax_cm.imshow(cm, cmap="Blues")
    top = max(max(row) for row in cm) or 1
    for t in range(10):
        for p in range(10):
            if cm[t][p]:
                ax_cm.text(p, t, str(cm[t][p]), ha="center", va="center", fontsize=8,
                           color="white" if cm[t][p] > top / 2 else "black")
    ax_cm.set_xticks(range(10))
    ax_cm.set_yticks(range(10))
    ax_cm.set_xlabel("predicted")
    ax_cm.set_ylabel("true")
    ax_cm.set_title(f"confusion matrix ({len(predictions)} test digits)")

    ax_wrong = fig.add_subplot(grid[2])  # holds the title; the digits sit in cells over it
    ax_wrong.axis("off")
    first = f", first {len(shown)}" if len(wrong) > len(shown) else ""
    ax_wrong.set_title(f"misclassified: {len(wrong)} of {len(predictions)}\n"
                       f"predicted (true label){first}", pad=16)
    rows = max(4, (len(shown) + 5) // 6)
    cell = grid[2].subgridspec(rows, 6, hspace=0.5, wspace=0.15)
    for k, i in enumerate(shown):
        ax = fig.add_subplot(cell[k // 6, k % 6])
        ax.set_xticks([])
        ax.set_yticks([])
        image = [data.X_test[i][r * 8:(r + 1) * 8] for r in range(8)]
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{predictions[i]} ({data.y_test[i]})", fontsize=9, color="tab:red")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


# ---- the command ------------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m micrograd_fast digits",
        description="An MLP(64, [HIDDEN, 10]) learns scikit-learn's 8x8 handwritten digits with "
        "a cross-entropy loss on minibatches, then reports the test accuracy and the time per "
        "epoch. Needs scikit-learn (pip install \"micrograd_fast[demo]\").",
    )
    parser.add_argument("--epochs", type=int, help="epochs (default 30; 1 on reference/micrograd)")
    parser.add_argument("--batch", type=int, default=16, help="minibatch size (default 16)")
    parser.add_argument("--hidden", type=int, default=32, help="hidden neurons (default 32)")
    parser.add_argument("--lr", type=float,
                        help="learning rate (default 0.15 for sgd, decaying to a tenth; "
                        "3e-3 for adam)")
    parser.add_argument("--optim", choices=OPTIMIZERS,
                        help="optimizer (default adam; sgd, the lecture's update, with --engine "
                        "micrograd, whose Values micrograd_fast.optim does not take)")
    parser.add_argument("--seed", type=int, default=1337, help="seed for the split, the weights "
                        "and the batches (default 1337)")
    parser.add_argument("--engine", choices=ENGINES, default="fast",
                        help="fast (this package), reference (pure Python) or micrograd (upstream)")
    parser.add_argument("--batches", type=int, metavar="N",
                        help="at most N minibatches per epoch (default all; 10 on reference, 2 on "
                        "micrograd)")
    parser.add_argument("--test-digits", type=int, metavar="N",
                        help="evaluate on the first N test digits (default all; 50 on micrograd)")
    parser.add_argument("--plot", metavar="PATH", help="save a PNG of the curves, the confusion "
                        "matrix and the misclassified test digits")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or epoch lines")
    args = parser.parse_args(argv)
    slow = args.engine != "fast"
    epochs = args.epochs if args.epochs is not None else (1 if slow else 30)
    max_batches = args.batches if args.batches is not None else (
        {"fast": None, "reference": 10, "micrograd": 2}[args.engine])
    test_digits = args.test_digits if args.test_digits is not None else (
        50 if args.engine == "micrograd" else None)
    for name, value in (("--epochs", epochs), ("--batch", args.batch), ("--hidden", args.hidden),
                        ("--batches", max_batches), ("--test-digits", test_digits)):
        if value is not None and value < 1:
            parser.error(f"{name} must be at least 1")
    if args.optim is None:
        args.optim = "sgd" if args.engine == "micrograd" else "adam"
    if args.lr is not None and not args.lr > 0:
        parser.error("--lr must be positive")
    args.plot = check_plot_path(parser, args.plot)
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optim]

    try:
        data = load_data(args.seed)
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 1
    if test_digits is not None:
        data.X_test, data.y_test = data.X_test[:test_digits], data.y_test[:test_digits]
    engine = load_engine(args.engine)
    random.seed(args.seed)
    model = engine.nn.MLP(64, [args.hidden, 10])
    params = model.parameters()
    optimizer = make_optimizer(args.optim, params, lr)
    backend = ""
    if args.engine == "fast":
        from .engine import BACKEND

        backend = f" ({BACKEND})"
    n_batches = (len(data.X_train) + args.batch - 1) // args.batch
    print(f"engine {args.engine}{backend}: MLP(64, [{args.hidden}, 10]), {len(params)} parameters; "
          f"{len(data.X_train)} training digits, {len(data.X_test)} test digits; loss "
          f"{engine.loss_name}; {args.optim} lr {lr:g}; {epochs} epoch{'' if epochs == 1 else 's'}"
          f" of "
          f"{min(n_batches, max_batches or n_batches)} batches of {args.batch}")
    start = time.perf_counter()
    history = train(engine, model, data, epochs, args.batch, optimizer, args.seed, max_batches,
                    progress=not args.no_progress, decay=args.optim == "sgd")
    elapsed = time.perf_counter() - start
    accuracy, predictions = history.test_acc[-1], history.predictions
    per_epoch = sum(history.epoch_time) / len(history.epoch_time)
    print(f"test accuracy {accuracy:.1%} ({sum(p == t for p, t in zip(predictions, data.y_test))}"
          f" of {len(data.y_test)}), final training loss {history.epoch_loss[-1]:.4f}")
    short = history.batches_per_epoch < n_batches
    print(f"time {elapsed:.2f} s in all; training {per_epoch:.3f} s per "
          f"{f'shortened epoch ({history.batches_per_epoch} batches)' if short else 'epoch'}, "
          f"{per_epoch / history.batches_per_epoch * 1e3:.1f} ms per batch of {args.batch}")
    if short:
        full = per_epoch / history.batches_per_epoch * n_batches
        hint = "" if args.engine == "fast" else " -- `--engine fast` does 30 in a few seconds"
        print(f"(a short run: {history.batches_per_epoch} of {n_batches} batches per epoch; a full "
              f"epoch would take about {full:.1f} s on this engine, 30 epochs {30 * full / 60:.1f} "
              f"min{hint})")
    if args.plot:
        plot(args.plot, history, data, predictions)
        print(f"plot saved to {args.plot}")
    return 0
