"""draw_dot: the lecture's picture of a graph, as a graphviz.Digraph.

    from micrograd_fast import Value, draw_dot
    x = Value(2.0, label='x'); y = (x * 3).tanh(); y.label = 'y'
    y.backward()
    draw_dot(y)                          # shows inline in Jupyter
    draw_dot(y).render('graph')          # writes graph.svg (needs the graphviz `dot` program)

Each Value is a record node `{ label | data 2.0000 | grad 0.0000 }`; each Value made by an op also
gets a small node named after the op (`+`, `*`, `**-1`, `tanh`, `dot`, ...) with an edge op -> value,
and every child has an edge child -> op. The graph is walked without recursion, so graphs of any
depth can be drawn (graphviz itself may be slow to lay out very large ones).

graphviz is imported here only, when draw_dot is called: `import micrograd_fast` needs nothing.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import graphviz

__all__ = ["draw_dot", "trace"]

_RANKDIRS = ("LR", "TB", "RL", "BT")
_RECORD_SPECIAL = re.compile(r'([\\{}|<>"])')  # characters with a meaning in a record label


def trace(root: Any) -> tuple[list[Any], list[tuple[Any, Any]]]:
    """(nodes, edges) of the graph that ends in root: every Value reachable through _prev, in
    the order first met, and each (child, parent) pair once -- the lecture's trace(), iterative."""
    if not (hasattr(root, "_prev") and hasattr(root, "data")):
        raise TypeError(f"trace() and draw_dot() take a Value (the end of the graph to draw), "
                        f"not {type(root).__name__!r}")
    nodes: list[Any] = []
    edges: list[tuple[Any, Any]] = []
    seen = {root}
    stack = [root]
    while stack:
        v = stack.pop()
        nodes.append(v)
        # _prev is a set: a + a has the one child a, drawn with one edge, as in micrograd
        for child in v._prev:
            edges.append((child, v))
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return nodes, edges


def _record_field(text: object) -> str:
    return _RECORD_SPECIAL.sub(r"\\\1", str(text))


def draw_dot(root: Any, format: str = "svg", rankdir: str = "LR") -> graphviz.Digraph:
    """The graph that ends in root as a graphviz.Digraph (lecture style).

    format: the output format of .render()/.pipe() ('svg', 'png', ...); rankdir: 'LR' (left to
    right, the default) or 'TB' (top to bottom), or 'RL'/'BT'.
    """
    try:
        import graphviz
    except ImportError as exc:
        raise ImportError(
            'draw_dot needs the graphviz Python package: pip install "micrograd_fast[viz]" '
            "(to render the picture, the Graphviz program `dot` is needed too, e.g. "
            "`apt install graphviz` or `brew install graphviz`)"
        ) from exc
    if rankdir not in _RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(_RANKDIRS)}, not {rankdir!r}")

    # `nodes` keeps every facade alive until the end: the compiled engine makes a facade for a
    # node whose Value was dropped when _prev asks for it, and id() is a unique name only while
    # the object lives (the lecture names nodes by id(), so do we)
    nodes, edges = trace(root)
    dot = graphviz.Digraph(format=format, graph_attr={"rankdir": rankdir})
    for n in nodes:
        uid = str(id(n))
        text = _record_field(getattr(n, "label", ""))  # upstream micrograd 0.1.0 has no label
        label = "{ %s | data %.4f | grad %.4f }" % (text, n.data, n.grad)
        dot.node(name=uid, label=label, shape="record")
        if n._op:
            # the op as its own small node, between the children and the Value it made
            dot.node(name=uid + str(n._op), label=graphviz.nohtml(str(n._op)))
            dot.edge(uid + str(n._op), uid)
    for child, parent in edges:
        # a Value built by hand with children but no op name: children point at it directly
        dot.edge(str(id(child)), str(id(parent)) + (str(parent._op) if parent._op else ""))
    return dot
