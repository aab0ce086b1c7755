"""draw_dot: the lecture's DOT picture -- one record node per Value, one node per op, edges
child -> op -> value -- on both engines, on fused nodes, on graphs whose intermediate Values were
dropped (the compiled engine re-creates them from _prev), and on deep chains."""
import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from micrograd_fast import draw_dot
from micrograd_fast.viz import trace
from mgf_examples import readme_example

try:
    import graphviz
except ImportError:  # the `viz` extra is not installed: only the tests that need no graphviz run
    graphviz = None

needs_graphviz = pytest.mark.skipif(graphviz is None, reason='needs pip install "micrograd_fast[viz]"')

REPO = Path(__file__).resolve().parent.parent

_QUOTED = r'"(?:[^"\\]|\\.)*"'
_ID = rf"(?:{_QUOTED}|[^\s\[\]]+)"
_NODE = re.compile(rf"(?P<name>{_ID}) \[label=(?P<label>{_ID})(?P<record> shape=record)?\]")
_EDGE = re.compile(rf"(?P<tail>{_ID}) -> (?P<head>{_ID})")


def _unquote(s):
    if s.startswith('"'):
        return re.sub(r'\\(["])', r"\1", s[1:-1])
    return s


def parse(dot):
    """(records {name: label}, ops {name: label}, edges [(tail, head)]) of draw_dot's DOT source."""
    records, ops, edges = {}, {}, []
    for line in dot.body:
        line = line.strip()
        if m := _EDGE.fullmatch(line):
            edges.append((_unquote(m["tail"]), _unquote(m["head"])))
        elif m := _NODE.fullmatch(line):
            target = records if m["record"] else ops
            target[_unquote(m["name"])] = _unquote(m["label"])
        else:
            raise AssertionError(f"unexpected DOT line {line!r}")
    return records, ops, edges


def canonical(dot):
    """The drawn graph without node names: for each Value its record label, its op and the sorted
    record labels of its children. Equal for equal graphs, whatever ids the nodes got."""
    records, ops, edges = parse(dot)
    feeds = {tail: head for tail, head in edges if tail in ops}  # op node -> the Value it made
    assert all(head in records for head in feeds.values())
    assert len(feeds) == len(ops)  # every op node makes exactly one Value
    op_of = {value: ops[op] for op, value in feeds.items()}
    children = collections.defaultdict(list)
    for tail, head in edges:
        if tail in ops:
            continue
        assert tail in records
        children[feeds.get(head, head) if head in ops else head].append(records[tail])
    return sorted((records[n], op_of.get(n, ""), tuple(sorted(children[n]))) for n in records)


def lecture_example(Value):
    """The lecture's first graph: L = (a*b + c) * f."""
    a = Value(2.0, label="a")
    b = Value(-3.0, label="b")
    c = Value(10.0, label="c")
    e = a * b; e.label = "e"
    d = e + c; d.label = "d"
    f = Value(-2.0, label="f")
    L = d * f; L.label = "L"
    L.backward()
    return a, b, c, d, e, f, L


@needs_graphviz
def test_lecture_example(engine):
    a, b, c, d, e, f, L = lecture_example(engine.Value)
    dot = draw_dot(L)
    assert isinstance(dot, graphviz.Digraph)
    assert dot.format == "svg" and dot.graph_attr == {"rankdir": "LR"}
    assert "\tgraph [rankdir=LR]" in dot.source
    records, ops, edges = parse(dot)
    assert sorted(records.values()) == sorted([
        "{ a | data 2.0000 | grad 6.0000 }",
        "{ b | data -3.0000 | grad -4.0000 }",
        "{ c | data 10.0000 | grad -2.0000 }",
        "{ e | data -6.0000 | grad -2.0000 }",
        "{ d | data 4.0000 | grad -2.0000 }",
        "{ f | data -2.0000 | grad 4.0000 }",
        "{ L | data -8.0000 | grad 1.0000 }",
    ])
    # nodes are named by id() as in the lecture, op nodes by id() + op
    assert records[str(id(a))] == "{ a | data 2.0000 | grad 6.0000 }"
    assert ops == {str(id(e)) + "*": "*", str(id(d)) + "+": "+", str(id(L)) + "*": "*"}
    assert sorted(edges) == sorted([
        (str(id(e)) + "*", str(id(e))), (str(id(d)) + "+", str(id(d))), (str(id(L)) + "*", str(id(L))),
        (str(id(a)), str(id(e)) + "*"), (str(id(b)), str(id(e)) + "*"),
        (str(id(e)), str(id(d)) + "+"), (str(id(c)), str(id(d)) + "+"),
        (str(id(d)), str(id(L)) + "*"), (str(id(f)), str(id(L)) + "*"),
    ])


@needs_graphviz
def test_rankdir_and_format(engine):
    *_, L = lecture_example(engine.Value)
    dot = draw_dot(L, format="png", rankdir="TB")
    assert dot.format == "png" and "\tgraph [rankdir=TB]" in dot.source
    with pytest.raises(ValueError, match="rankdir"):
        draw_dot(L, rankdir="diagonal")


@needs_graphviz
def test_lone_value(engine):
    v = engine.Value(3.5, label="x")
    assert parse(draw_dot(v)) == ({str(id(v)): "{ x | data 3.5000 | grad 0.0000 }"}, {}, [])


def expression(Value):
    """Most ops, with constants; only the root is returned, so every intermediate facade is gone."""
    x = Value(0.5, label="x")
    y = Value(-1.5, label="y")
    z = ((x * y + 2).tanh() - x / y) ** 2 + (x - 1).relu() + y.exp() + (1 - x).relu() * 3
    z.label = "z"
    z.backward()
    return z


@needs_graphviz
def test_dropped_intermediates_match_reference(engine, ref):
    dot = draw_dot(expression(engine.Value))
    records, ops, edges = parse(dot)
    # one node per op of micrograd's graph shapes (x / y = x * y**-1, a - b = a + b*-1, ...)
    assert collections.Counter(ops.values()) == {
        "+": 7, "*": 5, "ReLU": 2, "tanh": 1, "**-1": 1, "**2": 1, "exp": 1}
    # records: one per op, inputs x and y, constants 2, -1 (three times), 1 and 3
    assert len(records) == 18 + 2 + 6
    # an op -> value edge per op, a child -> op edge per distinct child of each op
    assert len(edges) == 18 + 30
    assert "{ x | data 0.5000 | grad " in " ".join(records.values())
    assert any(label.startswith("{ z | data ") and label.endswith("| grad 1.0000 }")
               for label in records.values())
    assert canonical(dot) == canonical(draw_dot(expression(ref.Value)))


@needs_graphviz
def test_fused_dot_and_sum(engine):
    V = engine.Value
    w = [V(0.5, label="w0"), V(-2.0, label="w1")]
    x = [V(3.0, label="x0"), V(0.25, label="x1")]
    b = V(1.0, label="b")
    s = engine.dot(w, x, b)
    s.label = "s"
    t = engine.sum_values([s, w[0], x[1]], 4.0)
    t.label = "t"
    t.backward()
    records, ops, edges = parse(draw_dot(t))
    assert sorted(ops.values()) == ["dot", "sum"]
    assert sorted(records.values()) == sorted([
        "{ w0 | data 0.5000 | grad 4.0000 }",   # 1 (sum) + x0 (dot)
        "{ w1 | data -2.0000 | grad 0.2500 }",
        "{ x0 | data 3.0000 | grad 0.5000 }",
        "{ x1 | data 0.2500 | grad -1.0000 }",  # 1 (sum) + w1 (dot)
        "{ b | data 1.0000 | grad 1.0000 }",
        "{ s | data 2.0000 | grad 1.0000 }",    # 1 + 1.5 - 0.5
        "{  | data 4.0000 | grad 1.0000 }",     # the constant start of the sum
        "{ t | data 6.7500 | grad 1.0000 }",
    ])
    op_name = {label: name for name, label in ops.items()}
    into_dot = sorted(records[tail] for tail, head in edges if head == op_name["dot"])
    assert [label.split(" |")[0] for label in into_dot] == ["{ b", "{ w0", "{ w1", "{ x0", "{ x1"]
    into_sum = sorted(records[tail].split(" |")[0] for tail, head in edges if head == op_name["sum"])
    assert into_sum == ["{ ", "{ s", "{ w0", "{ x1"]
    assert len(edges) == 2 + 5 + 4


@needs_graphviz
def test_neuron(engine):
    """An nn.Neuron: its fused 'dot' node and ReLU, weights, bias and the three inputs."""
    import random

    random.seed(0)
    n = engine.nn.Neuron(3)
    out = n([1.0, -2.0, 0.5])
    records, ops, edges = parse(draw_dot(out))
    assert sorted(ops.values()) == ["ReLU", "dot"]
    assert len(records) == 3 + 1 + 3 + 2  # w, b, x constants, dot, relu
    assert len(edges) == 2 + 7 + 1
    act = n.b.data
    for w, xi in zip(n.w, [1.0, -2.0, 0.5]):
        act = act + w.data * xi
    expected = [*("%.4f" % w.data for w in n.w), "0.0000", "1.0000", "-2.0000", "0.5000",
                "%.4f" % act, "%.4f" % max(act, 0.0)]
    assert sorted(records.values()) == sorted("{  | data %s | grad 0.0000 }" % d for d in expected)


@needs_graphviz
def test_record_label_escaping(engine):
    v = engine.Value(1.0, label='x|{y}<z>"q"')
    records, _, _ = parse(draw_dot(v))
    # record syntax characters escaped with a backslash (the quotes by the DOT string)
    assert list(records.values()) == [r'{ x\|\{y\}\<z\>"q" | data 1.0000 | grad 0.0000 }']


@needs_graphviz
def test_same_picture_as_upstream_micrograd(engine):
    """micrograd's README expression: the same graph, node for node, as upstream micrograd draws
    with the lecture's draw_dot (same ops, same constants, same numbers)."""
    micrograd_engine = pytest.importorskip("micrograd.engine")

    def readme(Value):
        return readme_example(Value)[2]

    ours = canonical(draw_dot(readme(engine.Value)))
    theirs = canonical(draw_dot(readme(micrograd_engine.Value)))
    assert len(ours) == len(theirs) > 30
    assert ours == theirs


def test_deep_chain_no_recursion(engine):
    n = 2500
    x = engine.Value(0.5, label="x0")
    for _ in range(n):  # each step: a constant leaf 1 and a '+' node
        x = x + 1
    x.label = "end"
    x.backward()
    assert n * 2 > sys.getrecursionlimit()
    nodes, edges = trace(x)
    assert len(nodes) == 2 * n + 1 and len(edges) == 2 * n
    if graphviz is None:
        pytest.skip('the DOT part needs pip install "micrograd_fast[viz]"')
    records, ops, dot_edges = parse(draw_dot(x))
    assert len(records) == 2 * n + 1 and len(ops) == n and len(dot_edges) == 3 * n
    assert collections.Counter(ops.values()) == {"+": n}
    labels = collections.Counter(records.values())
    assert labels["{ end | data 2500.5000 | grad 1.0000 }"] == 1
    assert labels["{ x0 | data 0.5000 | grad 1.0000 }"] == 1
    assert labels["{  | data 1.0000 | grad 1.0000 }"] == n  # the constants


def test_missing_graphviz_is_a_clear_import_error(engine, monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # `import graphviz` raises ImportError
    with pytest.raises(ImportError, match=re.escape('pip install "micrograd_fast[viz]"')):
        draw_dot(engine.Value(1.0))


def test_import_is_dependency_free():
    """`import micrograd_fast` loads none of the optional packages."""
    code = ("import sys, micrograd_fast; "
            "print(sorted({'graphviz', 'tqdm', 'matplotlib'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.skipif(shutil.which("dot") is None, reason="the Graphviz `dot` program is not installed")
@needs_graphviz
def test_render_svg(engine):
    *_, L = lecture_example(engine.Value)
    svg = draw_dot(L).pipe(format="svg").decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert svg.count('class="node"') == 7 + 3 and svg.count('class="edge"') == 9
    for text in ("data 2.0000", "grad 6.0000", "data 10.0000", "&#45;8.0000", ">L<", ">*<", ">+<"):
        assert text in svg


def test_draw_dot_takes_a_value_and_any_op_name(engine):
    pytest.importorskip("graphviz")
    from micrograd_fast.viz import draw_dot
    v = engine.Value(2.0, label="v")
    with pytest.raises(TypeError, match="take a Value"):
        draw_dot([v])
    w = engine.Value(3.0, (v,), 5)  # micrograd keeps any _op as given
    source = draw_dot(w).source
    assert 'label=5' in source or 'label="5"' in source
