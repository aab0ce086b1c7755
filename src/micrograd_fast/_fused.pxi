# ---- fused helpers: one node, the numbers of the unfused expression ----------------------------
#
# Owns: dot (a neuron's w.x + b), layer (a Layer of plain Neurons without a Python call per
# neuron) and sum_values. Each makes one n-ary node whose children sit in an mgf_ext block; the
# forward sums left to right in the order of the unfused expression, so the numbers equal
# micrograd's bit for bit.


cdef object _as_item(object o, str who):
    """A Value stays a Value; a number becomes a float (its leaf is made later); else TypeError."""
    cdef double x
    if isinstance(o, Value):
        return o
    if not _as_double(o, &x):
        raise TypeError(f"{who}() takes Values or real numbers, not {type(o).__name__!r}")
    return x


cdef Py_ssize_t _item_index(object o) except -1:
    """Node of an item from _as_item: the Value's node, or a new leaf for a number."""
    if isinstance(o, Value):
        return _index(<Value>o)
    return _new_node(OP_LEAF, <double>o, 0, 0)


def dot(ws, xs, bias):
    """bias + w0*x0 + w1*x1 + ... as ONE node ('dot'), summed left to right from bias.

    Exactly the numbers of micrograd's Neuron, ``sum((wi*xi for wi, xi in zip(w, x)), b)``,
    with one node instead of 2n. Pairs stop at the shorter of ws and xs, as zip does.
    """
    return _dot(ws, xs, bias)


def layer(neurons, x, neuron_type):
    """``[n(x) for n in neurons]``, with each neuron whose type is exactly neuron_type (nn.Neuron)
    computed here as Neuron.__call__ does -- ``dot(n.w, x, n.b)``, then ``.relu()`` if n.nonlin --
    so the nodes, their numbers and their creation order are the same, without a Python call per
    neuron. Any other neuron (a subclass, say) is called."""
    cdef list out = []
    cdef object act, d
    cdef PyObject* w
    cdef PyObject* b
    cdef PyObject* nonlin
    for n in neurons:
        if type(n) is not neuron_type:
            out.append(n(x))
            continue
        # the fields straight from the instance dict (a plain Neuron has no descriptors for
        # them); where one is missing, getattr gives the error a Python access would
        d = PyObject_GenericGetDict(n, NULL)
        w = PyDict_GetItemWithError(d, "w")
        b = PyDict_GetItemWithError(d, "b")
        nonlin = PyDict_GetItemWithError(d, "nonlin")
        act = _dot(<object>w if w != NULL else n.w, x, <object>b if b != NULL else n.b)
        if (<object>nonlin if nonlin != NULL else n.nonlin):
            if _grad_off():  # act is a new leaf only this call holds: relu in place
                _relu_leaf(<Value>act)
            else:
                act = _own(_fresh(), _unary(<Value>act, OP_RELU))
        out.append(act)
    return out


cdef object _dot(object ws, object xs, object bias):
    cdef object wseq = ws if type(ws) is list or type(ws) is tuple else list(ws)
    cdef object xseq = xs if type(xs) is list or type(xs) is tuple else list(xs)
    cdef Py_ssize_t n, k, j, i, w, x, b
    cdef PyObject** wv
    cdef PyObject** xv
    cdef mgf_ext* ext
    cdef double acc
    cdef Value out
    cdef bint values = True
    if not isinstance(bias, Value) or (<Value>bias)._i == 0:
        return _dot_general(wseq, xseq, min(len(wseq), len(xseq)), bias)
    # the neuron's case, all Values: one pass checks each pair, writes the child block and sums
    out = _fresh()  # may run Python code (a GC pass): before the items and indices are read
    _reserve_slots(1)
    if _grad_off() and _dot_leaf(out, wseq, xseq, (<Value>bias)._i):
        return out
    n = min(len(wseq), len(xseq))
    wv = PySequence_Fast_ITEMS(wseq)
    xv = PySequence_Fast_ITEMS(xseq)
    ext = _alloc_ext(2 * n + 1)
    b = (<Value>bias)._i
    ext.child[0] = <int32_t>b
    acc = nodes[b].data
    for k in range(n):
        if not (isinstance(<object>wv[k], Value) and isinstance(<object>xv[k], Value)):
            values = False
            break
        w = (<Value>wv[k])._i
        x = (<Value>xv[k])._i
        if w == 0 or x == 0:
            break
        ext.child[1 + k] = <int32_t>w
        ext.child[1 + n + k] = <int32_t>x
        nodes[w].nref += 1
        nodes[x].nref += 1
        acc = acc + nodes[w].data * nodes[x].data
    else:
        nodes[b].nref += 1
        return _own(out, _op_ext(OP_DOT, acc, ext, 2 * n + 1))
    # not all Values (numbers among them), or one without a node: undo the pairs done
    for j in range(k):
        nodes[ext.child[1 + j]].nref -= 1
        nodes[ext.child[1 + n + j]].nref -= 1
    PyMem_Free(ext)
    if values:
        _uninitialised()
    return _dot_general(wseq, xseq, n, bias)


cdef object _dot_general(object wseq, object xseq, Py_ssize_t n, object bias):
    """dot() with numbers among the operands: each number becomes a leaf, made in the
    reference's order (w0, x0, w1, x1, ..., bias)."""
    cdef list items = []  # converted before any index is read
    cdef list wpart = [], xpart = []
    cdef Py_ssize_t ib, k
    cdef double acc
    for k in range(n):
        items.append(_as_item(wseq[k], "dot"))
        items.append(_as_item(xseq[k], "dot"))
    items.append(_as_item(bias, "dot"))
    out = _fresh()
    _reserve_slots(len(items) + 1)
    for k in range(n):
        wpart.append(_item_index(items[2 * k]))
        xpart.append(_item_index(items[2 * k + 1]))
    ib = _item_index(items[2 * n])
    acc = nodes[ib].data
    for k in range(n):
        acc = acc + nodes[<Py_ssize_t>wpart[k]].data * nodes[<Py_ssize_t>xpart[k]].data
    return _own(out, _op_fused(OP_DOT, acc, [ib] + wpart + xpart))


def sum_values(values, start=0):
    """start + v0 + v1 + ... as ONE node ('sum'): the numbers of the builtin sum(values, start)."""
    cdef list items = [_as_item(start, "sum_values")]
    cdef list children = []
    cdef double acc
    cdef Py_ssize_t k
    for v in values:
        items.append(_as_item(v, "sum_values"))
    out = _fresh()
    _reserve_slots(len(items) + 1)
    for v in items:
        children.append(_item_index(v))
    acc = nodes[<Py_ssize_t>children[0]].data
    for k in range(1, len(children)):
        acc = acc + nodes[<Py_ssize_t>children[k]].data
    return _own(out, _op_fused(OP_SUM, acc, children))
