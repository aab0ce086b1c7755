# ---- classification: softmax, log_softmax, logsumexp, cross_entropy ----------------------------
#
# Owns: the four fused nodes for classification -- their forward (here, as a function of the
# children's data, _classify_value / _classify_forward) and their local backward
# (_classify_backward, called from _sweep.pxi's switch). Each node is n-ary over ALL the inputs,
# in the given order (children in its edge block); its `b` field, unused by n-ary nodes
# otherwise, holds the op's integer: which output a softmax / log_softmax node is, the target
# class of a cross_entropy node. The numbers are reference.py's, operation for operation:
#     m = max(x) (0 when infinite),  s = exp(x0 - m) + exp(x1 - m) + ... (left to right)
# so no exp overflows and logits of +-1000 keep their answer. libm's exp/log are what math.exp /
# math.log call, so both engines agree bit for bit. The backward recomputes m and s from the
# children's data: no allocation, O(n) per node.


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline void _shift_and_sum(const int32_t* child, Py_ssize_t n, double* m_out,
                                double* s_out) noexcept nogil:
    cdef double m = nodes[child[0]].data, s = 0.0, x
    cdef Py_ssize_t k
    for k in range(1, n):
        x = nodes[child[k]].data
        if x > m:
            m = x
    if isinf(m):  # as torch: inf - inf would be nan
        m = 0.0
    for k in range(n):
        s = s + exp(nodes[child[k]].data - m)
    m_out[0] = m
    s_out[0] = s


@cython.cdivision(True)
cdef inline double _prob(double x, double m, double s) noexcept nogil:
    """softmax: exp(x - m) / s (nan when every input is -inf)."""
    return exp(x - m) / s if s != 0.0 else NAN


cdef inline double _classify_value(unsigned int op, double x, double m, double s) noexcept nogil:
    """The node's value, given its m and s and x = its input (softmax, log_softmax: the input it
    is the output of; cross_entropy: the target's logit). libm's log(0) is -inf, as reference's
    _log."""
    if op == OP_SOFTMAX:
        return _prob(x, m, s)
    if op == OP_LOG_SOFTMAX:
        return (x - m) - log(s)
    if op == OP_LOGSUMEXP:
        return m + log(s)
    return log(s) - (x - m)  # OP_CROSS_ENTROPY


cdef double _classify_forward(Py_ssize_t j) noexcept nogil:
    """Node j's value from its children's current data (for a recompute of the graph)."""
    cdef mgf_node* n = &nodes[j]
    cdef double m, s
    _shift_and_sum(_kids(n), n.a, &m, &s)
    return _classify_value(n.op, nodes[_kids(n)[n.b]].data, m, s)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _classify_backward(mgf_node* n) noexcept nogil:
    """The local backward of a classification node (reference.py's _softmax_backward ...)."""
    cdef const int32_t* child = _kids(n)
    cdef Py_ssize_t cnt = n.a, i = n.b, k, c
    cdef double g = n.grad, m, s, p_i
    cdef unsigned int op = n.op
    _shift_and_sum(child, cnt, &m, &s)
    if op == OP_SOFTMAX:  # d p_i / d x_j = p_i * ([i == j] - p_j)
        p_i = _prob(nodes[child[i]].data, m, s)
        for k in range(cnt):
            c = child[k]
            nodes[c].grad += (p_i * ((k == i) - _prob(nodes[c].data, m, s))) * g
    elif op == OP_LOG_SOFTMAX:  # d log p_i / d x_j = [i == j] - p_j
        for k in range(cnt):
            c = child[k]
            nodes[c].grad += ((k == i) - _prob(nodes[c].data, m, s)) * g
    elif op == OP_LOGSUMEXP:  # d logsumexp / d x_j = p_j
        for k in range(cnt):
            c = child[k]
            nodes[c].grad += _prob(nodes[c].data, m, s) * g
    else:  # OP_CROSS_ENTROPY: d loss / d x_j = p_j - [j == target]
        for k in range(cnt):
            c = child[k]
            nodes[c].grad += (_prob(nodes[c].data, m, s) - (k == i)) * g


cdef list _classify(object values, unsigned int op, str who, object target):
    """The node(s) of op over values: one per input for softmax / log_softmax (output i has
    b = i), else one (cross_entropy: b = target; 0 for logsumexp)."""
    cdef list items = []
    cdef list outs = []
    cdef Py_ssize_t n, nout, o, k, i, c, e
    cdef int32_t* child = NULL
    cdef double m, s, y
    cdef bint grad_off
    for v in values:
        v = _as_item(v, who)
        if isinstance(v, Value) and (<Value>v)._i == 0:
            _uninitialised()
        items.append(v)
    n = len(items)
    if n == 0:
        raise ValueError(f"{who}() of an empty list")
    if not 0 <= target < n:
        raise IndexError(f"cross_entropy() target {target} is out of range for {n} classes")
    nout = n if op == OP_SOFTMAX or op == OP_LOG_SOFTMAX else 1
    for o in range(nout):  # the facades first: making them may run Python code (a GC pass)
        outs.append(_fresh())
    child = <int32_t*>PyMem_Malloc(n * sizeof(int32_t))
    if child == NULL:
        raise MemoryError()
    try:
        # may move nodes: before any index is read; then nothing can fail once nodes are made
        _reserve_room(n + nout, n * nout)
        for k in range(n):
            child[k] = <int32_t>_item_index(items[k])
        _shift_and_sum(child, n, &m, &s)
        grad_off = _grad_off()
        for o in range(nout):
            k = o if nout > 1 else <Py_ssize_t>target  # the input this output is about
            y = _classify_value(op, nodes[child[k]].data, m, s)
            if grad_off:  # no graph: the number alone, in a leaf
                _own(<Value>outs[o], _new_node(OP_LEAF, y, 0, 0))
                continue
            e = _alloc_edges(n)  # each output its own copy of the children
            memcpy(edges + e, child, n * sizeof(int32_t))
            i = _ext_node(op, y, e, n)
            nodes[i].b = <int32_t>k
            for c in range(n):
                nodes[child[c]].nref += 1
            _own(<Value>outs[o], i)
        if grad_off:  # the leaves made for numbers among the inputs go again
            for c in range(n):
                _drop_orphan(child[c])
    finally:
        PyMem_Free(child)
    return outs


def softmax(values):
    """[exp(x_i) / sum_j exp(x_j) for each i]: one 'softmax' node per output, each over all the
    inputs, computed as exp(x_i - max) / s."""
    return _classify(values, OP_SOFTMAX, "softmax", 0)


def log_softmax(values):
    """[x_i - logsumexp(x) for each i]: one 'log_softmax' node per output, each over all the
    inputs, computed as (x_i - max) - log(s)."""
    return _classify(values, OP_LOG_SOFTMAX, "log_softmax", 0)


def logsumexp(values):
    """log(exp(x0) + exp(x1) + ...) as ONE node ('logsumexp'), computed as max + log(s)."""
    return _classify(values, OP_LOGSUMEXP, "logsumexp", 0)[0]


def cross_entropy(logits, target):
    """-log softmax(logits)[target] = logsumexp(logits) - logits[target], as ONE node
    ('cross_entropy'), computed as log(s) - (logits[target] - max). Its gradient is p - onehot.
    A batch's loss is the mean: sum(losses) / n."""
    # a class index: an int (or anything with __index__, a numpy integer), not a bool or float
    if isinstance(target, bool) or not PyIndex_Check(target):
        raise TypeError(f"cross_entropy() target must be an int class index, "
                        f"not {type(target).__name__!r}")
    return _classify(logits, OP_CROSS_ENTROPY, "cross_entropy", operator.index(target))[0]
