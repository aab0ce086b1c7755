"""micrograd's own examples, shared by the tests: its README expression and its sanity check;
and a graph builder two teardown tests share."""


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


def labelled_graph(x, levels=20):
    """[y], the only reference to a graph over x whose freeing allocates (labels), with grads:
    each level two labelled children, so that two nodes can wait on the list at once. (Grads
    set, not by a backward(), which would take an epoch of the passes that follow.)"""
    y = x
    for i in range(levels):
        a, b = y * 1.5, y * 0.5
        a.label, b.label = f"a{i}", f"b{i}"
        a.grad = b.grad = 1.0
        y = a + b
    return [y]
