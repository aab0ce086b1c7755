"""micrograd's own README example and its two upstream tests, on both engines."""
import pytest


def readme_expression(Value):
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
    return a, b, g


def test_readme_example(engine):
    a, b, g = readme_expression(engine.Value)
    assert f"{g.data:.4f}" == "24.7041"
    assert f"{a.grad:.4f}" == "138.8338"
    assert f"{b.grad:.4f}" == "645.5773"


def test_readme_example_matches_reference_exactly(engine, ref):
    a, b, g = readme_expression(engine.Value)
    ra, rb, rg = readme_expression(ref.Value)
    assert g.data == rg.data
    assert (a.grad, b.grad) == (ra.grad, rb.grad)


def test_readme_example_matches_upstream(engine):
    micrograd_engine = pytest.importorskip("micrograd.engine")
    a, b, g = readme_expression(engine.Value)
    ua, ub, ug = readme_expression(micrograd_engine.Value)
    assert g.data == ug.data
    assert a.grad == pytest.approx(ua.grad, rel=1e-12)
    assert b.grad == pytest.approx(ub.grad, rel=1e-12)
