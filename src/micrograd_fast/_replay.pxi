# ---- replaying a retained graph: recompute(), graph zero_grad(), zero_grads(), assign() ---------
#
# Owns: each op's forward rule as a function of its node (_forward: the ONE place recompute
# evaluates an op; the operators in _value.pxi / _fused.pxi compute the same formulas with the
# same helpers, so a recomputed number equals a rebuilt one bit for bit), the evaluation order
# of a root's graph and its cache, and the bulk setters training loops use instead of a Python
# call per node.
#
# Index order is creation order (_arena.pxi), so the nodes under a root, lowest index first, are
# a valid evaluation order: one downward marking pass (as backward's _scan_sweep) finds them, and
# the cached list is reused while nothing can have changed it -- same root node (index and
# creation number), no compaction since (indices move), no node turned into a Python-backward
# node since (_graph_edits). A graph's structure never changes otherwise: children are fixed at
# creation, and a node under a live root cannot die.
#
# Adding an op: a case in _forward (and in _has_forward); nothing else here.

from cpython.buffer cimport PyBUF_RECORDS_RO, PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer
from cpython.sequence cimport PySequence_Fast
from libc.string cimport memcpy

cdef Py_ssize_t _graph_edits = 0  # bumped when a node's op changes (_make_python_op)


# ---- the forward rules --------------------------------------------------------------------------

cdef inline int _unary_value(unsigned int op, double x, double* y) noexcept nogil:
    """relu / tanh / exp / log / sigmoid of x (an F_* error code for exp and log)."""
    if op == OP_RELU:
        y[0] = 0.0 if x < 0 else x
    elif op == OP_TANH:
        y[0] = py_tanh(x)
    elif op == OP_EXP:
        return py_exp(x, y)
    elif op == OP_LOG:
        return py_log(x, y)
    else:
        y[0] = py_sigmoid(x)
    return 0


cdef int _unary_error(unsigned int op, int err) except -1:
    return _math_error(err, "math range error" if op == OP_EXP else "math domain error")


cdef inline bint _has_forward(unsigned int op) noexcept nogil:
    # the ops _forward knows, named one by one: OP_PY (backward in Python) has no forward rule,
    # and an op added to the engine has none until a case is added here and in _forward
    return (op == OP_LEAF or op == OP_ADD or op == OP_MUL or op == OP_POWK or op == OP_RELU
            or op == OP_TANH or op == OP_EXP or op == OP_LOG or op == OP_SIGMOID or op == OP_POW
            or op == OP_DOT or op == OP_SUM or op == OP_SOFTMAX or op == OP_LOG_SOFTMAX
            or op == OP_LOGSUMEXP or op == OP_CROSS_ENTROPY)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline int _forward(mgf_node* n) except -1:
    """Node n's data from its children's current data, by the formulas of the operators that
    make it (sums left to right, as _fused.pxi). Raises the operators' math errors."""
    cdef unsigned int op = n.op
    cdef int32_t* ext
    cdef Py_ssize_t k, m
    cdef double acc, y = 0.0
    cdef int err
    if op == OP_DOT:  # bias + w0*x0 + w1*x1 + ...  (children: bias, w..., x...)
        ext = _kids(n)
        m = (n.a - 1) >> 1
        acc = nodes[ext[0]].data
        for k in range(1, m + 1):
            acc = acc + nodes[ext[k]].data * nodes[ext[k + m]].data
        n.data = acc
    elif op == OP_ADD:
        n.data = nodes[n.a].data + nodes[n.b].data
    elif op == OP_MUL:
        n.data = nodes[n.a].data * nodes[n.b].data
    elif op == OP_RELU:
        y = nodes[n.a].data
        n.data = 0.0 if y < 0 else y
    elif op == OP_SUM:
        ext = _kids(n)
        acc = nodes[ext[0]].data
        for k in range(1, n.a):
            acc = acc + nodes[ext[k]].data
        n.data = acc
    elif op == OP_POWK:
        n.data = _power(nodes[n.a].data, n.u.k)
    elif op == OP_POW:
        n.data = _power(nodes[n.a].data, nodes[n.b].data)
    elif op == OP_TANH or op == OP_EXP or op == OP_LOG or op == OP_SIGMOID:
        err = _unary_value(op, nodes[n.a].data, &y)
        if err:
            _unary_error(op, err)
        n.data = y
    elif OP_SOFTMAX <= op <= OP_CROSS_ENTROPY:
        n.data = _classify_forward(n - nodes)
    elif op != OP_LEAF:  # _has_forward was checked before any number changed
        raise SystemError(f"recompute: no forward rule for op code {op}")
    return 0


# ---- a root's evaluation order, cached ------------------------------------------------------------

cdef struct _Order:
    uint64_t seq             # the root's creation number (0: unused entry)
    Py_ssize_t root          # its index
    Py_ssize_t compactions   # `compactions` and `_graph_edits` when the order was found
    Py_ssize_t edits
    Py_ssize_t bad           # lowest node without a forward rule (0: none)
    int32_t* idx             # every node under the root (itself included): the nops operation
    Py_ssize_t nops          # nodes first, highest index first, then the leaves
    Py_ssize_t n
    Py_ssize_t cap

cdef enum:
    # a training loss, a validation loss, ...: a few roots replayed in turn. Each entry keeps
    # its buffer (4 bytes per node of the biggest graph it held) until the process ends.
    N_ORDERS = 4

cdef _Order _orders[N_ORDERS]  # (C statics: zeroed)
cdef int _order_next = 0  # the entry the next new root replaces


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _scan_reach(Py_ssize_t root, int32_t** buf, Py_ssize_t* bufcap) except -1:
    """Every node under root, highest index first, into buf, and their count; 0 when they are
    spread too thinly over unrelated nodes (the caller then searches breadth-first). Marks with
    a new epoch."""
    cdef Py_ssize_t j = root, pending = 1, cnt = 0, skipped = 0, k, c
    cdef uint32_t e
    cdef mgf_node* n
    cdef int32_t* ext
    if epoch >= 0xFFFFFFF0u:
        epoch_reset()
    _next_epoch()
    e = epoch
    nodes[root].mark = e
    nodes[0].mark = e  # "no child" never counts as pending
    while pending and j > 0:
        n = &nodes[j]
        if n.mark != e:
            skipped += 1
            if skipped > 4 * cnt + 65536:
                return 0
            j -= 1
            continue
        pending -= 1
        if cnt == bufcap[0]:
            _reserve(buf, bufcap, cnt + 1)
        buf[0][cnt] = <int32_t>j
        cnt += 1
        if _is_ext(n.op):
            ext = _kids(n)
            for k in range(n.a):
                c = ext[k]
                pending += nodes[c].mark != e
                nodes[c].mark = e
        else:
            c = n.a
            pending += nodes[c].mark != e
            nodes[c].mark = e
            c = n.b
            pending += nodes[c].mark != e
            nodes[c].mark = e
        j -= 1
    return cnt


cdef int _find_order(_Order* o, Py_ssize_t root) except -1:
    cdef Py_ssize_t cnt, t
    cdef unsigned char* seen = NULL
    o.seq = 0  # invalid until complete
    _clear_pending()
    _reserve(&o.idx, &o.cap, 1024)
    cnt = -1
    if not scratch_busy:
        cnt = _scan_reach(root, &o.idx, &o.cap)
        if cnt == 0:  # breadth-first under a new epoch, then sorted
            _next_epoch()
            nodes[root].mark = epoch
            nodes[0].mark = epoch
            o.idx[0] = <int32_t>root
            cnt = _collect(&o.idx, &o.cap, 1, epoch, NULL)
    else:
        # called from a Python _backward during backward(): that sweep owns the marks
        seen = <unsigned char*>PyMem_RawCalloc(<size_t>root + 1, 1)
        if seen == NULL:
            raise MemoryError()
        try:
            seen[0] = seen[root] = 1
            o.idx[0] = <int32_t>root
            cnt = _collect(&o.idx, &o.cap, 1, 0, seen)
        finally:
            PyMem_RawFree(seen)
    o.n = cnt
    o.bad = 0
    for t in range(cnt):  # highest first: the last one found is the lowest
        if not _has_forward(nodes[o.idx[t]].op):
            o.bad = o.idx[t]
    o.nops = _leaves_last(o.idx, cnt)
    o.root = root
    o.compactions = compactions
    o.edits = _graph_edits
    o.seq = nodes[root].seq
    return 0


cdef Py_ssize_t _leaves_last(int32_t* idx, Py_ssize_t cnt) except -1:
    """Move the leaves to the end, keeping the order of the rest (recompute skips the leaves
    without looking at them); return the number of non-leaves."""
    cdef int32_t* leaves = <int32_t*>PyMem_RawMalloc(<size_t>(cnt if cnt else 1) * sizeof(int32_t))
    cdef Py_ssize_t t, j = 0, m = 0
    if leaves == NULL:
        raise MemoryError()
    for t in range(cnt):
        if nodes[idx[t]].op == OP_LEAF:
            leaves[m] = idx[t]
            m += 1
        else:
            idx[j] = idx[t]
            j += 1
    memcpy(&idx[j], leaves, <size_t>m * sizeof(int32_t))
    PyMem_RawFree(leaves)
    return j


cdef _Order* _cached_order(Py_ssize_t root) noexcept:
    """root's cached order if it is still valid and holds only nodes with a built-in backward
    (no Python callback can run during a sweep of it), else NULL."""
    cdef int k
    cdef _Order* o
    for k in range(N_ORDERS):
        o = &_orders[k]
        if (o.root == root and o.seq == nodes[root].seq and o.seq != 0 and o.bad == 0
                and o.compactions == compactions and o.edits == _graph_edits):
            return o
    return NULL


cdef _Order* _order_for(Py_ssize_t root) except NULL:
    """The evaluation order of root's graph: cached, or found now."""
    global _order_next
    cdef int k
    cdef _Order* o
    for k in range(N_ORDERS):
        o = &_orders[k]
        if (o.root == root and o.seq == nodes[root].seq and o.seq != 0
                and o.compactions == compactions and o.edits == _graph_edits):
            return o
    o = &_orders[_order_next]
    _order_next = (_order_next + 1) % N_ORDERS
    _find_order(o, root)
    return o


cdef str _node_name(Py_ssize_t i):
    label = _labels[nodes[i].seq] if nodes[i].flags & FLAG_LABEL else ''
    return f"op {_opname(i)!r}, label {label!r}"


@cython.boundscheck(False)
@cython.wraparound(False)
cdef double _recompute(Py_ssize_t root) except? -1.0:
    cdef _Order* o = _order_for(root)
    cdef Py_ssize_t t
    cdef int32_t* q = o.idx
    cdef mgf_node* n
    if o.bad:
        raise RuntimeError(
            f"recompute(): a node under this Value ({_node_name(o.bad)}) has its backward in "
            "Python (a hand-built node or an assigned _backward), so it has no forward rule to "
            "replay; nothing was changed. Rebuild the graph instead."
            if nodes[o.bad].op == OP_PY else
            f"recompute(): a node under this Value ({_node_name(o.bad)}) has no forward rule "
            "in recompute() yet; nothing was changed. Rebuild the graph instead.")
    # lowest index first: children before parents; the leaves (inputs, parameters, constants:
    # the order's tail) keep their data. Recomputed nodes' grads become 0, as a rebuilt graph's.
    for t in range(o.nops - 1, -1, -1):
        n = &nodes[q[t]]
        _forward(n)
        n.grad = 0.0
    return nodes[root].data


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _zero_grad_graph(Py_ssize_t root) except -1:
    cdef _Order* o = _order_for(root)
    cdef Py_ssize_t t
    for t in range(o.n):
        nodes[o.idx[t]].grad = 0.0
    return 0


# ---- bulk setters: one C loop, no Python call per Value ------------------------------------------

cdef object _values_seq(object values, str who):
    """values as a tuple of Values with nodes (TypeError / AttributeError otherwise): a copy
    of a list, so that Python code run meanwhile (a number's __float__) cannot change it."""
    cdef object seq = values if type(values) is tuple else tuple(values)
    cdef PyObject** items = PySequence_Fast_ITEMS(seq)
    cdef Py_ssize_t k
    for k in range(PySequence_Fast_GET_SIZE(seq)):
        if not isinstance(<object>items[k], Value):
            raise TypeError(f"{who}() takes Values, not {type(<object>items[k]).__name__!r}")
        _index(<Value>items[k])
    return seq


def zero_grads(values):
    """Set each Value's grad to 0.0 (e.g. a model's parameters), in one C loop."""
    cdef object seq = _values_seq(values, "zero_grads")
    cdef PyObject** items = PySequence_Fast_ITEMS(seq)
    cdef Py_ssize_t k
    for k in range(PySequence_Fast_GET_SIZE(seq)):
        nodes[(<Value>items[k])._i].grad = 0.0


cdef bint _native_doubles(Py_buffer* view) noexcept:
    cdef bytes fmt
    if view.ndim != 1 or view.format == NULL or view.itemsize != sizeof(double):
        return False
    fmt = view.format
    return fmt == b"d" or fmt == b"@d" or fmt == b"=d"


def assign(leaves, numbers):
    """Set leaves[k].data = numbers[k] for every k, in one C loop.

    numbers: any sequence of real numbers, or a 1-d buffer of doubles (a numpy float64 row,
    array.array('d'), a memoryview), read directly. Everything is checked before anything is
    set: a non-Value is a TypeError, different lengths a ValueError, a non-number a TypeError.
    """
    cdef object seq = _values_seq(leaves, "assign")
    cdef PyObject** items = PySequence_Fast_ITEMS(seq)
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), k
    cdef Py_buffer view
    cdef char* p
    cdef double* xs
    cdef object nums
    cdef PyObject** nitems
    if PyObject_CheckBuffer(numbers):
        PyObject_GetBuffer(numbers, &view, PyBUF_RECORDS_RO)
        try:
            if _native_doubles(&view):
                if view.shape[0] != n:
                    raise ValueError(f"assign(): {n} Values but {view.shape[0]} numbers")
                p = <char*>view.buf
                for k in range(n):  # no Python code runs in here: the indices stay put
                    nodes[(<Value>items[k])._i].data = (<double*>(p + k * view.strides[0]))[0]
                return
        finally:
            PyBuffer_Release(&view)
    nums = numbers if type(numbers) is tuple else tuple(numbers)
    if PySequence_Fast_GET_SIZE(nums) != n:
        raise ValueError(f"assign(): {n} Values but {PySequence_Fast_GET_SIZE(nums)} numbers")
    xs = <double*>PyMem_Malloc(<size_t>(n if n else 1) * sizeof(double))
    if xs == NULL:
        raise MemoryError()
    try:
        nitems = PySequence_Fast_ITEMS(nums)
        for k in range(n):  # converting may run Python code: all of it before any index is read
            if not _as_double(<object>nitems[k], &xs[k]):
                raise TypeError(
                    f"assign() takes real numbers, not {type(<object>nitems[k]).__name__!r}")
        for k in range(n):
            nodes[(<Value>items[k])._i].data = xs[k]
    finally:
        PyMem_Free(xs)
