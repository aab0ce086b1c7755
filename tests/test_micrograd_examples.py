"""micrograd's own README example and its two upstream tests, on both engines."""
import pytest
from mgf_examples import readme_example


def test_readme_example(engine):
    a, b, g = readme_example(engine.Value)
    assert f"{g.data:.4f}" == "24.7041"
    assert f"{a.grad:.4f}" == "138.8338"
    assert f"{b.grad:.4f}" == "645.5773"


def test_readme_example_matches_reference_exactly(engine, ref):
    a, b, g = readme_example(engine.Value)
    ra, rb, rg = readme_example(ref.Value)
    assert g.data == rg.data
    assert (a.grad, b.grad) == (ra.grad, rb.grad)


def test_readme_example_matches_upstream(engine):
    micrograd_engine = pytest.importorskip("micrograd.engine")
    a, b, g = readme_example(engine.Value)
    ua, ub, ug = readme_example(micrograd_engine.Value)
    assert g.data == ug.data
    assert a.grad == pytest.approx(ua.grad, rel=1e-12)
    assert b.grad == pytest.approx(ub.grad, rel=1e-12)
