"""micrograd's own examples, shared by the tests: its README expression and its sanity check."""


def readme_expression(a, b):
    """micrograd's README expression over the leaves a and b (the Values -4.0 and 2.0 there);
    the in-place operators rebind names, they mutate nothing."""
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
    return g


def readme_example(Value):
    """The README's example with any Value class: (a, b, g) after g.backward()."""
    a = Value(-4.0)
    b = Value(2.0)
    g = readme_expression(a, b)
    g.backward()
    return a, b, g
