# ---- backward(): topological order and the reverse sweep -------------------------------------
#
# The order is fixed by the reference engine: every node reachable from the root, newest first.
# That is a valid topological order because a node is always created after its children, and it
# makes both engines add gradient contributions in the same order, so they agree bit for bit.
#
# Here index order is creation order (_arena.pxi), so the order is found by one downward scan
# from the root: a marked node is reachable; it marks its children, which all sit below it.
# When the reachable nodes are spread thinly over a large index range (a small graph on top of
# big unrelated ones), the scan would wade through the others: then the graph is walked
# breadth-first and its indices sorted instead.

cdef extern from *:
    """
    static int mgf_cmp_desc(const void *x, const void *y) {
        int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
        return (a < b) - (a > b);
    }
    """
    int mgf_cmp_desc(const void* x, const void* y) noexcept nogil

cdef uint32_t epoch = 0         # marks equal to epoch: reached by the current sort
cdef int32_t* scratch = NULL    # reusable order buffer of the outermost backward()
cdef Py_ssize_t scratch_cap = 0
cdef bint scratch_busy = False  # a Python _backward may call backward() again: it gets its own
cdef Py_ssize_t topo_fallbacks = 0  # backward() calls that needed the sort (arena_stats)


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
cdef Py_ssize_t _topo_scan(Py_ssize_t root, int32_t** buf, Py_ssize_t* bufcap) except -2:
    """The downward scan; -1 (nothing changed but marks) when it meets too many unrelated nodes."""
    cdef Py_ssize_t j = root, pending = 1, out = 0, skipped = 0, c, k
    cdef uint32_t e
    cdef mgf_node* n
    cdef mgf_ext* ext
    cdef int32_t* q
    _next_epoch()
    e = epoch
    nodes[root].mark = e
    nodes[0].mark = e  # "no child" is slot 0: it must never count as pending
    q = buf[0]
    while pending:
        n = &nodes[j]
        if n.mark == e:
            pending -= 1
            if out == bufcap[0]:
                _reserve(buf, bufcap, out + 1)
                q = buf[0]
            q[out] = <int32_t>j
            out += 1
            # branch-free: whether a child is already marked is data, not control flow
            if _is_ext(n.op):
                ext = n.u.ext
                for k in range(n.a):
                    c = ext.child[k]
                    pending += nodes[c].mark != e
                    nodes[c].mark = e
            else:
                c = n.a
                pending += nodes[c].mark != e
                nodes[c].mark = e
                c = n.b
                pending += nodes[c].mark != e
                nodes[c].mark = e
        else:
            skipped += 1
            if skipped > 4 * out + 65536:
                return -1
        j -= 1
    return out


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _topo_walk(Py_ssize_t root, int32_t** buf, Py_ssize_t* bufcap) except -1:
    """Breadth-first over the graph (the queue is the buffer), then indices sorted, highest
    first: O(n log n) in the graph's size, whatever the arena holds besides."""
    cdef Py_ssize_t cnt = 1, r = 0, j, c, k
    cdef mgf_node* n
    cdef mgf_ext* ext
    cdef int32_t* q
    _next_epoch()
    nodes[0].mark = epoch
    q = buf[0]
    q[0] = <int32_t>root
    nodes[root].mark = epoch
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
        else:
            if cnt + 2 > bufcap[0]:
                _reserve(buf, bufcap, cnt + 2)
                q = buf[0]
            c = n.a
            if nodes[c].mark != epoch:
                nodes[c].mark = epoch
                q[cnt] = <int32_t>c
                cnt += 1
            c = n.b
            if nodes[c].mark != epoch:
                nodes[c].mark = epoch
                q[cnt] = <int32_t>c
                cnt += 1
    qsort(q, cnt, sizeof(int32_t), mgf_cmp_desc)
    return cnt


cdef Py_ssize_t _topo(Py_ssize_t root, int32_t** buf, Py_ssize_t* bufcap) except -1:
    """Write every node reachable from root into buf[0], newest first; return how many."""
    global topo_fallbacks
    cdef Py_ssize_t cnt
    _reserve(buf, bufcap, 1024)
    cnt = _topo_scan(root, buf, bufcap)
    if cnt >= 0:
        return cnt
    topo_fallbacks += 1
    return _topo_walk(root, buf, bufcap)


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
    global scratch, scratch_cap, scratch_busy, pinned
    cdef int32_t* own = NULL
    cdef Py_ssize_t own_cap = 0, cnt, t
    cdef int32_t** buf
    cdef Py_ssize_t* bufcap
    cdef bint outer = not scratch_busy
    cdef int32_t* q
    cdef mgf_node* n
    cdef double g, fa, fb
    cdef unsigned int op
    if outer:
        buf, bufcap = &scratch, &scratch_cap
        scratch_busy = True
    else:
        buf, bufcap = &own, &own_cap
    pinned += 1  # the order holds indices: a Python _backward must not trigger a compaction
    try:
        cnt = _topo(root, buf, bufcap)
        nodes[root].grad = 1.0
        q = buf[0]  # nested backward() calls use their own buffer: q stays valid
        for t in range(cnt):
            n = &nodes[q[t]]
            op = n.op
            # leaves, + and * dominate every graph: one branch-free case for the three. A leaf's
            # "children" are slot 0, a harmless sink; + is * by 1.0, which is exact for every
            # double (inf and nan included), so the numbers are those of reference.py
            if op <= OP_MUL:
                g = n.grad
                fa = nodes[n.b].data if op == OP_MUL else 1.0
                fb = nodes[n.a].data if op == OP_MUL else 1.0
                nodes[n.a].grad += fa * g
                nodes[n.b].grad += fb * g
            else:
                _backprop_node(q[t])
    finally:
        pinned -= 1
        if outer:
            scratch_busy = False
        else:
            PyMem_RawFree(own)
    return 0
