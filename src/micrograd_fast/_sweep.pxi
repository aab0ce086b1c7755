# ---- backward(): topological order and the reverse sweep -------------------------------------
#
# The order is fixed by the reference engine: every node reachable from the root, newest
# (highest creation number) first. That is a valid topological order because a node is always
# created after its children, and it makes both engines add gradient contributions in the same
# order, so they agree bit for bit.
#
# Finding it: one marking pass from the root (breadth-first over an explicit queue, so any depth
# works); then, because slots are handed out lowest-first, the marked nodes usually already sit
# in creation order by index, and a downward scan over the marked index range lists them
# newest-first in O(range). If the scan finds two nodes out of order (slot reuse put a newer node
# below an older one), or the range is much wider than the graph, the list is sorted by
# creation number instead.

cdef extern from *:
    """
    typedef struct { uint64_t seq; int32_t idx; } mgf_seqidx;
    static int mgf_cmp_newest_first(const void *x, const void *y) {
        uint64_t a = ((const mgf_seqidx *)x)->seq, b = ((const mgf_seqidx *)y)->seq;
        return (a < b) - (a > b);
    }
    """
    ctypedef struct mgf_seqidx:
        uint64_t seq
        int32_t idx
    int mgf_cmp_newest_first(const void* x, const void* y) noexcept nogil

cdef uint32_t epoch = 0         # marks equal to epoch: reached by the current sort
cdef int32_t* scratch = NULL    # reusable order buffer of the outermost backward()
cdef Py_ssize_t scratch_cap = 0
cdef bint scratch_busy = False  # a Python _backward may call backward() again: it gets its own


cdef int _next_epoch() except -1:
    global epoch
    cdef Py_ssize_t i
    epoch += 1
    if epoch == 0:  # wrapped after 2**32 sorts: clear the marks once
        for i in range(top):
            nodes[i].mark = 0
        epoch = 1
    return 0


cdef int _reserve(int32_t** buf, Py_ssize_t* bufcap, Py_ssize_t need) except -1:
    cdef Py_ssize_t new_cap
    cdef void* tmp
    if need <= bufcap[0]:
        return 0
    new_cap = bufcap[0] * 2 if bufcap[0] else 1024
    while new_cap < need:
        new_cap *= 2
    tmp = PyMem_RawRealloc(buf[0], <size_t>new_cap * sizeof(int32_t))
    if tmp == NULL:
        raise MemoryError()
    buf[0] = <int32_t*>tmp
    bufcap[0] = new_cap
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _topo(Py_ssize_t root, int32_t** buf, Py_ssize_t* bufcap) except -1:
    """Write every node reachable from root into buf[0], newest first; return how many."""
    cdef Py_ssize_t cnt = 1, r = 0, j, c, k, lo = root, hi = root, out
    cdef uint64_t prev
    cdef mgf_node* n
    cdef mgf_ext* ext
    cdef int32_t* q
    cdef mgf_seqidx* pairs
    _next_epoch()
    _reserve(buf, bufcap, 16)
    q = buf[0]
    q[0] = <int32_t>root
    nodes[root].mark = epoch
    # 1. mark: breadth-first, the queue is the buffer itself
    while r < cnt:
        j = q[r]
        r += 1
        n = &nodes[j]
        if _is_ext(n.op):
            if cnt + n.a > bufcap[0]:
                _reserve(buf, bufcap, cnt + n.a)
                q = buf[0]
            ext = n.u.ext
            for k in range(n.a):
                c = ext.child[k]
                if nodes[c].mark != epoch:
                    nodes[c].mark = epoch
                    q[cnt] = <int32_t>c
                    cnt += 1
                    lo = c if c < lo else lo
                    hi = c if c > hi else hi
        else:
            if cnt + 2 > bufcap[0]:
                _reserve(buf, bufcap, cnt + 2)
                q = buf[0]
            c = n.a
            if c and nodes[c].mark != epoch:
                nodes[c].mark = epoch
                q[cnt] = <int32_t>c
                cnt += 1
                lo = c if c < lo else lo
                hi = c if c > hi else hi
            c = n.b
            if c and nodes[c].mark != epoch:
                nodes[c].mark = epoch
                q[cnt] = <int32_t>c
                cnt += 1
                lo = c if c < lo else lo
                hi = c if c > hi else hi
    # 2. order: the queue is consumed, the marks say who is reachable. When the marked index
    #    range is dense, a downward scan lists the nodes; if they are in creation order, done.
    if hi - lo < 4 * cnt:
        out = 0
        prev = <uint64_t>-1
        j = hi
        while j >= lo:
            if nodes[j].mark == epoch:
                if nodes[j].seq >= prev:
                    break  # slot reuse put a newer node below an older one: sort instead
                prev = nodes[j].seq
                q[out] = <int32_t>j
                out += 1
            j -= 1
        else:
            return cnt
        out = 0  # the scan overwrote part of the queue: list the marked nodes again, then sort
        j = lo
        while j <= hi:
            if nodes[j].mark == epoch:
                q[out] = <int32_t>j
                out += 1
            j += 1
    # 3. sort by creation number, newest first
    pairs = <mgf_seqidx*>PyMem_RawMalloc(<size_t>cnt * sizeof(mgf_seqidx))
    if pairs == NULL:
        raise MemoryError()
    for k in range(cnt):
        pairs[k].seq = nodes[q[k]].seq
        pairs[k].idx = q[k]
    qsort(pairs, cnt, sizeof(mgf_seqidx), mgf_cmp_newest_first)
    for k in range(cnt):
        q[k] = pairs[k].idx
    PyMem_RawFree(pairs)
    return cnt


cdef int _raise_math(int err) except -1:
    if err == F_ZERO_DIV:
        raise ZeroDivisionError("0.0 cannot be raised to a negative power")
    if err == F_DOMAIN:
        raise ValueError("math domain error")
    if err == F_RANGE:
        raise OverflowError(34, "Numerical result out of range")
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
cdef int _backprop_node(Py_ssize_t j) except -1:
    """Node j's local backward: add its contribution to its children's grads (as reference.py)."""
    cdef mgf_node* n = &nodes[j]
    cdef double g = n.grad, x, y, d
    cdef Py_ssize_t a = n.a, b = n.b, k, m
    cdef int err
    cdef mgf_ext* ext
    cdef object fn
    cdef unsigned int op = n.op
    if op == OP_ADD:
        nodes[a].grad += g
        nodes[b].grad += g
    elif op == OP_MUL:
        x = nodes[a].data
        y = nodes[b].data
        nodes[a].grad += y * g
        nodes[b].grad += x * g
    elif op == OP_LEAF:
        pass
    elif op == OP_RELU:
        nodes[a].grad += (n.data > 0) * g
    elif op == OP_DOT:
        ext = n.u.ext
        m = (n.a - 1) >> 1
        nodes[ext.child[0]].grad += g
        for k in range(1, m + 1):
            x = nodes[ext.child[k + m]].data
            y = nodes[ext.child[k]].data
            nodes[ext.child[k]].grad += x * g
            nodes[ext.child[k + m]].grad += y * g
    elif op == OP_SUM:
        ext = n.u.ext
        for k in range(n.a):
            nodes[ext.child[k]].grad += g
    elif op == OP_POWK:
        x = n.u.k
        err = py_pow(nodes[a].data, x - 1, &d)
        if err:
            _raise_math(err)
        nodes[a].grad += (x * d) * g
    elif op == OP_TANH:
        x = n.data
        nodes[a].grad += (1 - x * x) * g
    elif op == OP_EXP:
        nodes[a].grad += n.data * g
    elif op == OP_LOG:
        x = nodes[a].data
        if x == 0.0:
            raise ZeroDivisionError("float division by zero")
        nodes[a].grad += g / x
    elif op == OP_SIGMOID:
        x = n.data
        nodes[a].grad += (x * (1 - x)) * g
    elif op == OP_POW:
        x = nodes[a].data
        y = nodes[b].data
        err = py_pow(x, y - 1, &d)
        if err:
            _raise_math(err)
        nodes[a].grad += (y * d) * g
        if x > 0:
            d = n.data * log(x)
        elif x == 0 and y >= 0:  # as torch: 0 where a == 0 and b >= 0, nan where a < 0
            d = 0.0
        else:
            d = NAN
        nodes[b].grad += d * g
    elif op == OP_PY:
        if n.u.ext.fn != NULL:
            fn = <object>n.u.ext.fn  # a new reference: the callable may replace itself
            fn()  # may grow the arena: nothing above is used after this
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _backward_from(Py_ssize_t root) except -1:
    global scratch, scratch_cap, scratch_busy
    cdef int32_t* own = NULL
    cdef Py_ssize_t own_cap = 0, cnt, t
    cdef int32_t** buf
    cdef Py_ssize_t* bufcap
    cdef bint outer = not scratch_busy
    if outer:
        buf, bufcap = &scratch, &scratch_cap
        scratch_busy = True
    else:
        buf, bufcap = &own, &own_cap
    try:
        cnt = _topo(root, buf, bufcap)
        nodes[root].grad = 1.0
        for t in range(cnt):
            _backprop_node(buf[0][t])
    finally:
        if outer:
            scratch_busy = False
        else:
            PyMem_RawFree(own)
    return 0
