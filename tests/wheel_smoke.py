"""Smoke test of an INSTALLED micrograd_fast (a wheel in a fresh environment).

Run it from outside the source tree so that the installed copy is the one imported:

    python tests/wheel_smoke.py        # exit status 0 and "wheel smoke: ok" when all is well

tests/test_distribution.py runs it in a fresh venv with a freshly built wheel, and cibuildwheel
runs it on every wheel it builds (pyproject.toml, [tool.cibuildwheel] test-command). It needs
nothing but the standard library and the package.
"""
import importlib.machinery
import os
import random
import sys


def check(condition, message):
    if not condition:
        raise SystemExit(f"wheel smoke: FAILED: {message}")


def readme_example(Value):
    """micrograd's README expression (tests/test_micrograd_examples.py has the same one)."""
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


def main():
    os.environ.pop("MICROGRAD_FAST_PURE_PYTHON", None)
    import micrograd_fast
    from micrograd_fast import _engine, demo, nn, reference

    package_dir = os.path.dirname(os.path.abspath(micrograd_fast.__file__))
    # the compiled engine is a real extension module, installed beside the package's Python files
    # (not found through a checkout's path extension)
    check(micrograd_fast.BACKEND == "cython", f"BACKEND is {micrograd_fast.BACKEND!r}")
    engine_file = os.path.abspath(_engine.__file__)
    check(engine_file.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)),
          f"_engine is not an extension module: {engine_file}")
    check(os.path.dirname(engine_file) == package_dir,
          f"_engine ({engine_file}) is not in the package directory ({package_dir})")
    check(micrograd_fast.Value is _engine.Value, "micrograd_fast.Value is not the compiled Value")

    # the typed API ships with the package (PEP 561)
    for name in ("py.typed", "_engine.pyi"):
        check(os.path.isfile(os.path.join(package_dir, name)), f"{name} is not installed")

    # one version, in the code and in the installed metadata
    try:
        from importlib.metadata import version
    except ImportError:  # pragma: no cover - Python < 3.8
        version = None
    if version is not None:
        check(version("micrograd_fast") == micrograd_fast.__version__,
              f"metadata version {version('micrograd_fast')} != {micrograd_fast.__version__}")

    # micrograd's README numbers, and bit-for-bit the reference engine's
    g, da, db = readme_example(micrograd_fast.Value)
    check((f"{g:.4f}", f"{da:.4f}", f"{db:.4f}") == ("24.7041", "138.8338", "645.5773"),
          f"README example gave {g!r}, {da!r}, {db!r}")
    check((g, da, db) == readme_example(reference.Value),
          "README example differs from the reference engine")

    # a few steps of the demo's training, compiled vs reference: the same losses, exactly
    X, y = demo.make_moons(n_samples=30, seed=7)
    losses = {}
    for name, Value, nn_module in (("compiled", micrograd_fast.Value, nn),
                                   ("reference", reference.Value, nn.over(reference))):
        random.seed(7)
        model = nn_module.MLP(2, [8, 8, 1])
        losses[name] = [demo.train_step(model, X, y, Value, k, 3)[0] for k in range(3)]
    check(losses["compiled"] == losses["reference"],
          f"training losses differ: {losses['compiled']} vs {losses['reference']}")
    check(losses["compiled"][-1] < losses["compiled"][0],
          f"loss did not go down: {losses['compiled']}")

    # deep graphs: no recursion limit in backward
    x = micrograd_fast.Value(1.0)
    out = x
    for _ in range(20000):
        out = out * 1.0 + 0.0
    out.backward()
    check(x.grad == 1.0, f"deep chain gradient {x.grad!r}")

    print(f"wheel smoke: ok (micrograd_fast {micrograd_fast.__version__}, Python "
          f"{sys.version.split()[0]}, {os.path.basename(engine_file)})")


if __name__ == "__main__":
    main()
