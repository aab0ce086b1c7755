# ---- fused helpers: one node, the numbers of the unfused expression ----------------------------
#
# Owns: dot (a neuron's w.x + b), layer (a Layer of plain Neurons without a Python call per
# neuron) and sum_values. Each makes one n-ary node whose children sit in an edge block; the
# forward sums left to right in the order of the unfused expression, so the numbers equal
# micrograd's bit for bit.

from itertools import islice as _islice


cdef object _as_item(object o, str who):
    """A Value stays a Value; a real number (what float's operators take, as micrograd's
    w * x does) becomes a float (its leaf is made later); else TypeError."""
    cdef double x
    if isinstance(o, Value):
        return o
    if not _as_real(o, &x):
        t = type(o)  # (another library's Value is named with its module)
        name = t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
        raise TypeError(f"{who}() takes Values or real numbers, not {name!r}")
    return x


cdef Py_ssize_t _item_index(object o) except -1:
    """Node of an item from _as_item: the Value's node, or a new leaf for a number."""
    if isinstance(o, Value):
        return _index(<Value>o)
    return _new_node(OP_LEAF, <double>o, 0, 0)


cdef int _check_items(list items) except -1:
    """Raise before any leaf is made if a Value among the items has no node (_item_index would
    raise halfway, leaving the leaves made before it owned by nobody)."""
    for o in items:
        if isinstance(o, Value) and (<Value>o)._i == 0:
            _uninitialised()
    return 0


def dot(ws, xs, bias):
    """bias + w0*x0 + w1*x1 + ... as ONE node ('dot'), summed left to right from bias.

    Exactly the numbers of micrograd's Neuron, ``sum((wi*xi for wi, xi in zip(w, x)), b)``,
    with one node instead of 2n. Pairs stop at the shorter of ws and xs, as zip does.
    """
    return _dot(ws, xs, bias)


cdef inline bint _live_value(PyObject* o) noexcept:
    """o is a Value (or subclass instance) bound to a node."""
    cdef PyObject* t = Py_TYPE(o)
    if t != <PyObject*>_value_type and not mgf_is_subtype(t, _value_type):
        return False
    return MGF_IDX(o) != 0


def layer(neurons, x, neuron_type):
    """``[n(x) for n in neurons]``, with each neuron whose type is exactly neuron_type (nn.Neuron)
    computed here as Neuron.__call__ does -- ``dot(n.w, x, n.b)``, then its activation if
    n.nonlin -- so the nodes, their numbers and their creation order are the same, without a
    Python call per neuron (and the dot node gets no facade: nobody holds it). Any other neuron
    (a subclass, say) is called; so is every neuron once a script has given Value a relu, tanh
    or sigmoid of its own (`Value.relu = my_relu`), which Neuron.__call__ then calls. (An x
    that is drawn from as it is read, or not iterable, goes to each neuron as it is: _layer.)"""
    if not _activations_ours():
        return [n(x) for n in neurons]
    return _layer(neurons, x, neuron_type)


cdef object _s_neurons = "neurons"


def mlp(layers, x, layer_type, neuron_type):
    """``for layer in layers: x = layer(x)``, each layer whose type is exactly layer_type
    (nn.Layer) computed here as Layer.__call__ does -- layer(layer.neurons, x, neuron_type),
    its one Value when it has one neuron -- without a Python call per layer. Any other layer is
    called. Between two such layers of plain Neurons the values pass as node indices: the
    same nodes in the same order, without a facade for each hidden neuron's output."""
    if not _activations_ours():  # (as layer(); _mlp hands an iterator x to the layer's neurons)
        for lay in layers:
            x = lay(x)
        return x
    return _mlp(layers if type(layers) is list else list(layers), x, layer_type, neuron_type)


cdef struct _Held:
    int32_t* idx     # node indices, one reference each held here (a facade's, without one)
    Py_ssize_t n


cdef object _held_values(_Held* h):
    """The held nodes as Values (their facades, made where missing), references let go: a list,
    or the one Value of a one-neuron layer (as Layer.__call__ returns)."""
    cdef list out = [_facade(h.idx[k]) for k in range(h.n)]
    _let_go(h)
    return out[0] if len(out) == 1 else out


cdef void _let_go(_Held* h) noexcept:
    global pinned
    cdef Py_ssize_t k
    if h.idx == NULL:
        return
    pinned -= 1
    for k in range(h.n):
        _release_noexcept(h.idx[k])
    PyMem_RawFree(h.idx)
    h.idx = NULL
    h.n = 0


cdef object _runnable(object lay, object layer_type, object neuron_type):
    """lay's neurons when this module can run them on node indices -- a plain Layer whose
    neurons are a list of plain Neurons, in grad mode -- else None."""
    if type(lay) is not layer_type or _grad_off():
        return None
    neurons = getattr(lay, _s_neurons)
    if type(neurons) is not list or not neurons:
        return None
    for n in <list>neurons:
        if type(n) is not neuron_type:
            return None
    return neurons


cdef object _mlp(list layers, object x, object layer_type, object neuron_type):
    global pinned
    cdef Py_ssize_t k, j, nl = len(layers), i
    cdef _Held held, made
    cdef list out
    cdef object xseq, neurons, after
    cdef PyObject* w
    cdef PyObject* b
    cdef int act
    cdef bint following, called
    held.idx = made.idx = NULL
    held.n = made.n = 0
    after = None  # the next layer's neurons, checked by _runnable while no Python code has run
    try:
        for k in range(nl):
            lay = layers[k]
            neurons = after if after is not None else _runnable(lay, layer_type, neuron_type)
            # hand this layer's outputs on as indices when the next layer runs here too (and
            # this one has several neurons: a one-neuron layer hands on its Value)
            following = False
            after = None
            if neurons is not None and len(<list>neurons) > 1 and k + 1 < nl:
                after = _runnable(layers[k + 1], layer_type, neuron_type)
                following = after is not None
            if held.idx != NULL and neurons is None:
                x = _held_values(&held)  # this layer takes Values
            if held.idx == NULL and not following:
                # Values in and out: as Layer.__call__ (or the layer's own __call__); after is
                # None here, so the next layer is checked afresh
                if type(lay) is layer_type:
                    out = _layer(getattr(lay, _s_neurons), x, neuron_type)
                    x = out[0] if len(out) == 1 else out
                else:
                    x = lay(x)
                continue
            if held.idx == NULL and _iterator(x):  # (from a layer of the script's own) drawn
                after = None  # from as read, a share per neuron: the layer's neurons one by one
                x = lay(x)
                continue
            if held.idx == NULL:  # Values in (kept alive by xseq meanwhile): as indices
                xseq = x if type(x) is list or type(x) is tuple else list(x)
                if not _all_live(xseq):  # numbers among them: the Values way
                    after = None  # (the layer may call neurons: check the next one afresh)
                    out = _layer(<list>neurons, xseq, neuron_type)
                    x = out[0] if len(out) == 1 else out
                    continue
                _hold_values(&held, xseq)
            # indices out, held here until the next layer has made its nodes on them
            made.idx = <int32_t*>PyMem_RawMalloc(<size_t>len(<list>neurons) * sizeof(int32_t))
            if made.idx == NULL:
                raise MemoryError()
            pinned += 1  # (so that compaction leaves the held indices alone)
            for j in range(len(<list>neurons)):
                n = (<list>neurons)[j]
                act = _plain_neuron(n, &w, &b)
                i = _neuron_held(n, act, <object>w if act >= 0 else None,
                                 <object>b if act >= 0 else None, &held, &called)
                if called:  # the neuron itself ran: check the next layer afresh
                    after = None
                made.idx[j] = <int32_t>i
                made.n = j + 1
            _let_go(&held)
            held = made
            made.idx = NULL
            made.n = 0
            if not following:
                x = _held_values(&held)
        return x
    finally:
        _let_go(&made)
        _let_go(&held)


cdef int _hold_values(_Held* h, object xseq) except -1:
    """Hold the nodes of Values (all live) as indices, one reference each."""
    global pinned
    cdef PyObject** v = PySequence_Fast_ITEMS(xseq)
    cdef Py_ssize_t k, n = len(xseq)
    h.idx = <int32_t*>PyMem_RawMalloc(<size_t>(n or 1) * sizeof(int32_t))
    if h.idx == NULL:
        raise MemoryError()
    pinned += 1
    for k in range(n):
        h.idx[k] = <int32_t>MGF_IDX(v[k])
        nodes[h.idx[k]].nref += 1
    h.n = n
    return 0


cdef int _hold_inputs(_Held* h, object xseq) except -1:
    """A layer's inputs, (re)read: 1 when they are all Values with nodes, whose nodes are then
    held in h (in grad mode) for the neurons to use as indices; what h held before is let go."""
    _let_go(h)
    if not _all_live(xseq):
        return 0
    if not _grad_off():
        _hold_values(h, xseq)
    return 1


cdef Py_ssize_t _neuron_held(object neuron, int act, object ws, object bias, _Held* x,
                             bint* called) except -1:
    """The output node of one neuron on held input nodes, with one reference for the caller:
    made here (act >= 0: a plain Neuron's fields) or, for anything else -- a missing field, a
    weight or bias that is not a Value with a node -- by the neuron itself on the inputs' Values
    (called[0] says which)."""
    cdef Py_ssize_t i = 0
    cdef Value v
    if act >= 0:
        i = _neuron_on_indices(ws, x.idx, x.n, bias, <unsigned int>act)
    called[0] = i == 0
    if i == 0:
        v = <Value?>neuron([_facade(x.idx[k]) for k in range(x.n)])
        i = _index(v)
        nodes[i].nref += 1
    return i


cdef Py_ssize_t _neuron_on_indices(object ws, int32_t* xi, Py_ssize_t m, object bias,
                                   unsigned int act) except -1:
    """_neuron's nodes for inputs given as (held) node indices: act(bias + ws . x), the same
    nodes and numbers; returns the output node with one reference for the caller, or 0 (nothing
    made) when a weight or the bias is not a Value with a node."""
    cdef Py_ssize_t i
    if not (type(ws) is list and _live_value(<PyObject*>bias)):
        return 0
    i = _dot_act_node(ws, xi, min(m, len(<list>ws)), bias, act)  # (pairs stop at the shorter)
    if i:
        nodes[i].nref += 1  # the caller's
    return i


cdef list _layer(object neurons, object x, object neuron_type):
    cdef list out = []
    cdef object xseq
    if _iterator(x):  # (as layer() or _mlp got it: drawn from as read, one Value, a number)
        return [n(x) for n in neurons]
    xseq = x if _seq(x) else list(x)
    cdef PyObject* w
    cdef PyObject* b
    cdef int act
    cdef _Held held
    cdef bint xs_live
    held.idx = NULL
    held.n = 0
    try:
        xs_live = _hold_inputs(&held, xseq)  # once for all the neurons
        for n in neurons:
            act = _plain_neuron(n, &w, &b) if type(n) is neuron_type else -1
            if act < 0:
                out.append(n(x))
                # Python code ran: look at the inputs again (they may be other Values now)
                xs_live = _hold_inputs(&held, xseq)
                continue
            # (strong references: _neuron's _fresh() may run a GC pass, whose callbacks may
            # rebind the neuron's fields and free what the dict held)
            ws = <object>w
            bias = <object>b
            out.append(_neuron(ws, xseq, xs_live, &held, bias, <unsigned int>act))
    finally:
        _let_go(&held)
    return out


cdef bint _all_live(object seq) noexcept:
    cdef PyObject** v = PySequence_Fast_ITEMS(seq)
    cdef Py_ssize_t k
    for k in range(len(seq)):
        if not _live_value(v[k]):
            return False
    return True


cdef object _neuron(object ws, object xseq, bint xs_live, _Held* x, object bias,
                    unsigned int act):
    """act(bias + ws . xseq): the dot node, then the activation's (act OP_LEAF: none); x: the
    inputs' nodes, held by the caller (none held: no graph was being recorded)."""
    cdef Py_ssize_t n, i
    cdef Value out
    if not (xs_live and type(ws) is list and _live_value(<PyObject*>bias)):
        return _neuron_general(ws, xseq, bias, act)
    out = _fresh()  # may run Python code (a GC pass): before the items and indices are read
    n = min(len(<list>ws), PySequence_Fast_GET_SIZE(xseq))  # (xseq: a list or tuple)
    if x.idx != NULL and n > x.n:  # (inputs appended by that code have no held node)
        n = x.n
    if _grad_off():  # no graph: dot()'s leaf, the activation applied to its number in place
        _reserve_slots(1)
        if not _dot_leaf(out, ws, xseq, MGF_IDX(<PyObject*>bias)):
            return _neuron_general(ws, xseq, bias, act)
        if act != OP_LEAF:
            _unary_value(act, nodes[out._i].data, &nodes[out._i].data)  # cannot fail
        return out
    i = _dot_act_node(ws, x.idx, n, bias, act) if x.idx != NULL else 0
    if i == 0:  # a weight that is not a Value with a node: the general way
        return _neuron_general(ws, xseq, bias, act)
    return _own(out, i)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _dot_act_node(object ws, int32_t* xi, Py_ssize_t n, object bias,
                              unsigned int act) except -1:
    """The dot node of bias + ws[0]*x0 + ... (n pairs; ws a list, bias a Value with a node, the
    inputs xi[k] held node indices), then its activation's (act OP_LEAF: none): the output
    node, no reference counted for its caller -- or 0, nothing made, when a weight is not a
    Value with a node."""
    cdef Py_ssize_t k, w, x, b, i, e
    cdef PyObject** wv
    cdef PyObject* wk
    cdef PyObject* vt
    cdef mgf_node* ns
    cdef int32_t* ch
    cdef double acc
    _reserve_room(2, 2 * n + 1)
    wv = PySequence_Fast_ITEMS(ws)
    e = _alloc_edges(2 * n + 1)
    ch = edges + e
    b = MGF_IDX(<PyObject*>bias)
    ch[0] = <int32_t>b
    # the loop works on local copies of the globals (nodes, the Value type) and of each weight:
    # extensions are compiled with -fno-strict-aliasing, so after every store through ch or
    # ns the compiler would otherwise load them again
    ns = nodes
    vt = <PyObject*>_value_type
    acc = ns[b].data
    for k in range(n):  # the weights and inputs, as micrograd's sum(w*x ..., b): left to right
        wk = wv[k]
        if (Py_TYPE(wk) != vt and not mgf_is_subtype(Py_TYPE(wk), _value_type)) or not MGF_IDX(wk):
            _give_back_dot_block(e, k, n)
            return 0
        w = MGF_IDX(wk)
        x = xi[k]
        ch[1 + k] = <int32_t>w
        ch[1 + n + k] = <int32_t>x
        ns[w].nref += 1
        ns[x].nref += 1
        acc = acc + ns[w].data * ns[x].data
    ns[b].nref += 1
    i = _ext_node(OP_DOT, acc, e, 2 * n + 1)
    if act != OP_LEAF:
        _unary_value(act, acc, &acc)  # relu/tanh/sigmoid: cannot fail
        i = _new_node(act, acc, i, 0)
    return i


cdef void _give_back_dot_block(Py_ssize_t e, Py_ssize_t k, Py_ssize_t n) noexcept:
    """Undo a dot node's block at e abandoned after k of its n pairs: the references those
    pairs counted (the bias's is counted only once all pairs are done), then the block."""
    cdef Py_ssize_t j
    cdef int32_t* ch = edges + e
    for j in range(k):
        nodes[ch[1 + j]].nref -= 1
        nodes[ch[1 + n + j]].nref -= 1
    _free_edges(e, 2 * n + 1)


cdef object _neuron_general(object ws, object xseq, object bias, unsigned int act):
    """_neuron with numbers among the operands (or Values without a node): as dot(), then the
    activation as its method would."""
    cdef object v = _dot(ws, xseq, bias)
    if act != OP_LEAF:
        v = _own(_fresh(), _unary(<Value>v, act))
    return v


def neuron_parameters(neurons, neuron_type, list out=None):
    """``[p for n in neurons for p in n.parameters()]``, with each neuron whose type is exactly
    neuron_type (nn.Neuron) read here as Neuron.parameters does -- ``n.w + [n.b]`` -- without a
    Python call per neuron. Any other neuron's parameters() is called. With out, they are
    appended to it (and it is returned)."""
    if out is None:
        out = []
    cdef PyObject* w
    cdef PyObject* b
    for n in neurons:
        if type(n) is neuron_type and _plain_fields(n, &w, &b):
            out.extend(<list>w)
            out.append(<object>b)
        else:
            out.extend(n.parameters())
    return out


def zero_grad_neurons(neurons, neuron_type):
    """``zero_grads(neuron_parameters(neurons, neuron_type))``: when every neuron is a plain
    Neuron whose w and b are Values with nodes, their grads are set to 0 straight from their
    dicts, without building the list; otherwise the list is built, and zero_grads checks all of
    it before setting anything (so a bad weight anywhere leaves every grad as it was)."""
    cdef list ns = neurons if type(neurons) is list else list(neurons)
    cdef Py_ssize_t count = len(ns), j, k, m
    cdef PyObject** fields = <PyObject**>PyMem_Malloc(<size_t>(2 * count + 1) * sizeof(PyObject*))
    cdef PyObject* w
    cdef PyObject* b
    cdef PyObject** items
    cdef bint plain = True
    if fields == NULL:
        raise MemoryError()
    try:
        for j in range(count):  # check them all first (no Python code runs here)
            n = ns[j]
            if not (type(n) is neuron_type and _plain_fields(n, &w, &b) and _live_value(b)
                    and _all_live(<object>w)):
                plain = False
                break
            fields[2 * j] = w
            fields[2 * j + 1] = b
        if plain:  # then zero them, from the fields just read (still what the dicts hold)
            for j in range(count):
                items = PySequence_Fast_ITEMS(<object>fields[2 * j])
                m = PySequence_Fast_GET_SIZE(<object>fields[2 * j])
                for k in range(m):
                    nodes[MGF_IDX(items[k])].grad = 0.0
                nodes[MGF_IDX(fields[2 * j + 1])].grad = 0.0
            return
    finally:
        PyMem_Free(fields)
    zero_grads(neuron_parameters(ns, neuron_type))


cdef inline bint _seq(object o) noexcept:
    return type(o) is list or type(o) is tuple


cdef tuple _zipped(object ws, object xs):
    """ws and xs as sequences, each iterator drawn from as zip(ws, xs) draws from it: a neuron
    of n weights takes n items of an iterator of inputs and leaves the rest to the next one,
    as micrograd's zip does."""
    if _seq(ws):
        return ws, list(_islice(xs, len(ws)))  # (zip stops on ws's end before asking xs)
    pairs = list(zip(ws, xs))
    return [p[0] for p in pairs], [p[1] for p in pairs]


cdef bint _iterator(object x) except -1:
    """x is drawn from as it is read (a generator, map(Value, row)): each neuron that reads it
    takes its own share, so the neurons are called one by one, as micrograd's Layer does. So
    they are when x cannot be iterated at all: a neuron of the script's own may take a single
    Value or number (and a layer without neurons returns [] whatever x is)."""
    if _seq(x):
        return False
    try:
        it = iter(x)
    except Exception:  # (whatever its __iter__ raises: a neuron that iterates x raises it)
        return True
    return it is x


cdef object _dot(object ws, object xs, object bias):
    cdef object wseq = ws, xseq = xs
    if not (_seq(ws) and _seq(xs)):
        wseq, xseq = _zipped(ws, xs)
    cdef Py_ssize_t n, k, i, w, x, b, e
    cdef PyObject** wv
    cdef PyObject** xv
    cdef int32_t* ch
    cdef double acc
    cdef Value out
    cdef bint values = True
    if not isinstance(bias, Value) or (<Value>bias)._i == 0:
        return _dot_general(wseq, xseq, min(len(wseq), len(xseq)), bias)
    # the neuron's case, all Values: one pass checks each pair, writes the edge block and sums
    out = _fresh()  # may run Python code (a GC pass): before the items and indices are read
    n = min(len(wseq), len(xseq))
    _reserve_room(1, 2 * n + 1)
    if _grad_off() and _dot_leaf(out, wseq, xseq, (<Value>bias)._i):
        return out
    wv = PySequence_Fast_ITEMS(wseq)
    xv = PySequence_Fast_ITEMS(xseq)
    e = _alloc_edges(2 * n + 1)
    ch = edges + e
    b = (<Value>bias)._i
    ch[0] = <int32_t>b
    acc = nodes[b].data
    for k in range(n):
        if not (isinstance(<object>wv[k], Value) and isinstance(<object>xv[k], Value)):
            values = False
            break
        w = (<Value>wv[k])._i
        x = (<Value>xv[k])._i
        if w == 0 or x == 0:
            break
        ch[1 + k] = <int32_t>w
        ch[1 + n + k] = <int32_t>x
        nodes[w].nref += 1
        nodes[x].nref += 1
        acc = acc + nodes[w].data * nodes[x].data
    else:
        nodes[b].nref += 1
        return _own(out, _op_ext(OP_DOT, acc, e, 2 * n + 1))
    # not all Values (numbers among them), or one without a node: undo the pairs done
    _give_back_dot_block(e, k, n)
    if values:
        _uninitialised()
    return _dot_general(wseq, xseq, n, bias)


cdef object _dot_general(object wseq, object xseq, Py_ssize_t n, object bias):
    """dot() with numbers among the operands: each number becomes a leaf, made in the
    reference's order (w0, x0, w1, x1, ..., bias)."""
    cdef list items = []  # converted before any index is read
    cdef Py_ssize_t k
    cdef double acc
    cdef int32_t* ch  # the dot's children: bias, w0 ... w(n-1), x0 ... x(n-1)
    for k in range(n):
        items.append(_as_item(wseq[k], "dot"))
        items.append(_as_item(xseq[k], "dot"))
    items.append(_as_item(bias, "dot"))
    out = _fresh()
    ch = <int32_t*>PyMem_Malloc(<size_t>(2 * n + 1) * sizeof(int32_t))
    if ch == NULL:
        raise MemoryError()
    try:
        # everything that can fail is done: from the first number's leaf to the dot node that
        # owns it, nothing allocates or runs Python code
        _reserve_room(2 * n + 2, 2 * n + 1)
        _check_items(items)
        for k in range(n):
            ch[1 + k] = <int32_t>_item_index(items[2 * k])
            ch[1 + n + k] = <int32_t>_item_index(items[2 * k + 1])
        ch[0] = <int32_t>_item_index(items[2 * n])
        acc = nodes[ch[0]].data
        for k in range(n):
            acc = acc + nodes[ch[1 + k]].data * nodes[ch[1 + n + k]].data
        return _own(out, _op_fused(OP_DOT, acc, ch, 2 * n + 1))
    finally:
        PyMem_Free(ch)


def sum_values(values, start=0):
    """start + v0 + v1 + ... as ONE node ('sum'): the numbers of the builtin sum(values, start)."""
    cdef list items = [_as_item(start, "sum_values")]
    cdef double acc
    cdef Py_ssize_t k, n
    cdef int32_t* ch
    for v in values:
        items.append(_as_item(v, "sum_values"))
    out = _fresh()
    n = len(items)
    ch = <int32_t*>PyMem_Malloc(<size_t>n * sizeof(int32_t))
    if ch == NULL:
        raise MemoryError()
    try:
        _reserve_room(n + 1, n)  # (then, as in _dot_general, nothing can fail)
        _check_items(items)
        for k in range(n):
            ch[k] = <int32_t>_item_index(items[k])
        acc = nodes[ch[0]].data
        for k in range(1, n):
            acc = acc + nodes[ch[k]].data
        return _own(out, _op_fused(OP_SUM, acc, ch, n))
    finally:
        PyMem_Free(ch)
