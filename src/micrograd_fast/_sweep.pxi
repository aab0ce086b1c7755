# ---- backward(): topological order and the reverse sweep -------------------------------------
#
# The order is fixed by the reference engine: every node reachable from the root, newest first.
# That is a valid topological order because a node is always created after its children, and it
# makes both engines add gradient contributions in the same order, so they agree bit for bit.
#
# Here index order is creation order (_arena.pxi), so no order needs to be built: one downward
# pass from the root visits the reachable nodes newest first, each after all of its parents
# (see _scan_sweep).

cdef extern from *:
    """
    static int mgf_cmp_desc(const void *x, const void *y) {
        int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
        return (a < b) - (a > b);
    }
    """
    int mgf_cmp_desc(const void* x, const void* y) noexcept nogil

cdef enum:
    # the scan asks for the node this many slots below the one it is at: when a graph is bigger
    # than the caches, a node's gradient is otherwise read straight from memory on the path
    # through which one node's gradient feeds the next (a chain of 10^6 nodes: 6.9 -> 4 ns/node)
    SWEEP_AHEAD = 64

cdef uint32_t epoch = 0         # marks equal to epoch: reached by the current sort
cdef int32_t* scratch = NULL    # reusable order buffer of the outermost backward()
cdef Py_ssize_t scratch_cap = 0
cdef bint scratch_busy = False  # a Python _backward may call backward() again: it gets its own
cdef Py_ssize_t topo_fallbacks = 0  # backward() calls that needed the sort (arena_stats)


cdef int _next_epoch() except -1:
    global epoch
    epoch += 1
    if epoch == 0:  # wrapped after 2**32 passes: clear the marks once
        epoch_reset()
        epoch = 1
    return 0


cdef void _forget_scratch() noexcept:
    """Give the order buffer's memory back (with a big arena's: it grew with its graphs)."""
    global scratch, scratch_cap
    if not scratch_busy:
        PyMem_RawFree(scratch)
        scratch = NULL
        scratch_cap = 0


cdef int _reserve(int32_t** buf, Py_ssize_t* bufcap, Py_ssize_t need) except -1:
    """Room for need entries in the index buffer buf[0] of bufcap[0] (see mgf_grow)."""
    if need > bufcap[0] and mgf_grow(buf, bufcap, need) < 0:
        raise MemoryError()
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _collect(int32_t** buf, Py_ssize_t* bufcap, Py_ssize_t cnt, uint32_t e,
                         unsigned char* seen) except -1:
    """Breadth-first from the cnt nodes in buf[0] (already marked), appending every node they
    reach; then all of them sorted highest index first. A node is marked by setting its mark to
    e, or, when seen is given, seen[index] (which leaves the marks alone)."""
    cdef Py_ssize_t r = 0, j, c, k, m
    cdef mgf_node* n
    cdef int32_t* q = buf[0]
    cdef int32_t* kids
    cdef int32_t pair[2]
    while r < cnt:
        j = q[r]
        r += 1
        n = &nodes[j]
        if _is_ext(n.op):
            kids, m = _kids(n), n.a
        else:
            pair[0], pair[1] = n.a, n.b
            kids, m = pair, 2
        if cnt + m > bufcap[0]:
            _reserve(buf, bufcap, cnt + m)
            q = buf[0]
        for k in range(m):
            c = kids[k]
            if seen != NULL:
                if seen[c]:
                    continue
                seen[c] = 1
            else:
                if nodes[c].mark == e:
                    continue
                nodes[c].mark = e
            q[cnt] = <int32_t>c
            cnt += 1
    qsort(q, cnt, sizeof(int32_t), mgf_cmp_desc)
    return cnt


cdef int _raise_math(int err) except -1:
    if err == F_ZERO_DIV:
        raise ZeroDivisionError("0.0 cannot be raised to a negative power")
    if err == F_DOMAIN:  # py_pow's only domain error, worded as reference.py's _pow
        raise ValueError("negative number cannot be raised to a fractional power")
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
    cdef int32_t* ext
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
        ext = _kids(n)
        m = (n.a - 1) >> 1
        nodes[ext[0]].grad += g
        for k in range(1, m + 1):
            x = nodes[ext[k + m]].data
            y = nodes[ext[k]].data
            nodes[ext[k]].grad += x * g
            nodes[ext[k + m]].grad += y * g
    elif op == OP_SUM:
        ext = _kids(n)
        for k in range(n.a):
            nodes[ext[k]].grad += g
    elif op == OP_POWK:
        x = n.u.k
        err = py_pow(nodes[a].data, x - 1, &d)
        if err:
            _raise_math(err)
        nodes[a].grad += (x * d) * g
    elif op == OP_TANH:
        err = py_tanh_grad(n.data, &d)
        if err:
            _raise_math(err)
        nodes[a].grad += d * g
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
    elif OP_SOFTMAX <= op <= OP_CROSS_ENTROPY:
        _classify_backward(n)  # _classify.pxi
    elif op == OP_PY:
        if _py_fn(j) != NULL:
            fn = <object>_py_fn(j)  # a new reference: the callable may replace itself
            fn()  # may grow the arena: nothing above is used after this
            fn = None
            # nodes it dropped may wait on the _pending list (a teardown was running, or failed
            # for lack of memory): the scan reads their marks next
            _clear_pending()
    return 0


cdef inline void _local_plus_times(mgf_node* n) noexcept:
    # leaves, + and * dominate every graph: one branch-free case for the three. A leaf's
    # "children" are slot 0, a harmless sink; + is * by 1.0, which is exact for every double
    # (inf and nan included), so the numbers are those of reference.py
    cdef double g = n.grad
    cdef bint mul = n.op == OP_MUL
    cdef double fa = nodes[n.b].data if mul else 1.0
    cdef double fb = nodes[n.a].data if mul else 1.0
    nodes[n.a].grad += fa * g
    nodes[n.b].grad += fb * g


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _sweep_list(int32_t* q, Py_ssize_t cnt) except -1:
    """Local backward of q[0], q[1], ... in that order (q: highest index first)."""
    cdef Py_ssize_t t
    cdef mgf_node* n
    for t in range(cnt):
        n = &nodes[q[t]]
        if n.op == OP_LEAF:
            continue
        if n.op <= OP_MUL:
            _local_plus_times(n)
        else:
            _backprop_node(q[t])  # may run Python and move the arena: n is not used after
    return 0


cdef inline Py_ssize_t _lower(Py_ssize_t low, Py_ssize_t c) noexcept:
    """min(low, c) for a child c >= 1; "no child" (0) leaves low as it is (branch-free)."""
    return c if <size_t>(c - 1) < <size_t>(low - 1) else low


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _scan_sweep(Py_ssize_t root) except -1:
    """Backward in one downward pass over the arena from root.

    Index order is creation order (_arena.pxi), so when the pass reaches a marked node, every
    node above it -- all its parents -- has already added its contribution: its gradient is
    final, it runs its local backward and marks its children (which sit below it). The pass
    stops below the lowest marked node (kept as it goes: a minimum per child edge, cheaper than
    counting the marked nodes still to do). When the reachable nodes are spread thinly over
    a long range of unrelated ones (a small graph on top of big ones kept alive), it would wade
    through them all: then the rest of the graph is found breadth-first and sorted instead.
    """
    global topo_fallbacks
    cdef Py_ssize_t j = root, low = root, out = 0, nq = 0, skipped = 0, c, b, k, t, cnt, m, w, x
    cdef Py_ssize_t hot = 0  # the node whose gradient hot_g is (0: none)
    cdef double g, xd, wd, fa, fb, hot_g = 0.0
    cdef bint mul
    cdef uint32_t e, e2
    cdef int32_t* rest = NULL
    cdef Py_ssize_t rest_cap = 0
    cdef mgf_node* n
    cdef int32_t* ext
    cdef int32_t* q = scratch  # the nodes done but leaves, in order: the fallback's starting points
    if epoch >= 0xFFFFFFF0u:  # the fallback needs epoch + 1 without a wrap in between
        epoch_reset()
    _next_epoch()
    e = epoch
    nodes[root].mark = e
    nodes[0].mark = e  # "no child" is slot 0: never below low, never done
    while j >= low:
        n = &nodes[j]
        mgf_prefetch_below(nodes, j, SWEEP_AHEAD)
        if n.mark != e:
            skipped += 1
            if skipped > 4 * out + 65536:
                break
            j -= 1
            continue
        out += 1
        if n.op == OP_LEAF:
            # nothing to do -- and nothing to touch: a leaf's "children" are slot 0, and adding
            # into slot 0 for every leaf would chain each leaf's work to the previous one's
            # through that one memory cell (store-to-load latency, ~3 ns a leaf)
            j -= 1
            continue
        q[nq] = <int32_t>j
        nq += 1
        # mark the children (branch-free: whether one is marked already is data), then run the
        # node's local backward
        if n.op == OP_DOT:  # a neuron: marks and gradients in one loop (the numbers of
            ext = _kids(n)  # _backprop_node's OP_DOT case, in its order)
            if j == hot:  # (its activation, right above it, has just added it)
                g = hot_g
            else:
                g = n.grad
            m = (n.a - 1) >> 1
            c = ext[0]
            nodes[c].grad += g
            low = _lower(low, c)
            nodes[c].mark = e
            for k in range(1, m + 1):
                w = ext[k]
                x = ext[k + m]
                xd = nodes[x].data
                wd = nodes[w].data
                nodes[w].grad += xd * g
                nodes[x].grad += wd * g
                low = _lower(low, w)
                nodes[w].mark = e
                low = _lower(low, x)
                nodes[x].mark = e
        elif _is_ext(n.op):
            ext = _kids(n)
            for k in range(n.a):
                c = ext[k]
                low = _lower(low, c)
                nodes[c].mark = e
            _backprop_node(j)  # may run Python and move the arena: n is not used after
        else:
            c = n.a
            low = _lower(low, c)
            nodes[c].mark = e
            b = n.b
            low = _lower(low, b)
            nodes[b].mark = e
            if n.op <= OP_MUL:
                # _local_plus_times, with the gradient just added into the first child kept in
                # a register: when that child is the very next node done (a chain, or any node
                # right below its parent), its gradient is read from there, not from memory,
                # which would wait for the store (no other node's work comes in between, so
                # the two are the same number)
                if j == hot:
                    g = hot_g
                else:
                    g = n.grad
                mul = n.op == OP_MUL
                fa = nodes[b].data if mul else 1.0
                fb = nodes[c].data if mul else 1.0
                hot_g = nodes[c].grad + fa * g
                nodes[c].grad = hot_g
                nodes[b].grad += fb * g
                hot = c if c != b else 0  # (x * x: the second addition went to the same node)
                j -= 1
                continue
            if n.op == OP_RELU:  # a neuron's activation, over the neuron's dot right below it
                if j == hot:
                    g = hot_g
                else:
                    g = n.grad
                hot_g = nodes[c].grad + (n.data > 0) * g
                nodes[c].grad = hot_g
                hot = c
                j -= 1
                continue
            _backprop_node(j)
        hot = 0
        j -= 1
    if j < low:
        return 0
    # the fallback: the nodes still to do are the marked ones at or below j, each a child of a
    # node done; collect everything they reach under a new epoch and finish in index order
    topo_fallbacks += 1
    _next_epoch()
    e2 = epoch
    nodes[0].mark = e2
    cnt = 0
    try:
        for t in range(nq):
            n = &nodes[q[t]]
            if _is_ext(n.op):
                for k in range(n.a):
                    cnt = _seed(&rest, &rest_cap, cnt, _kids(n)[k], j, e, e2)
            else:
                cnt = _seed(&rest, &rest_cap, cnt, n.a, j, e, e2)
                cnt = _seed(&rest, &rest_cap, cnt, n.b, j, e, e2)
        cnt = _collect(&rest, &rest_cap, cnt, e2, NULL)
        _sweep_list(rest, cnt)
    finally:
        PyMem_RawFree(rest)
    return 0


cdef inline Py_ssize_t _seed(int32_t** buf, Py_ssize_t* bufcap, Py_ssize_t cnt, Py_ssize_t c,
                             Py_ssize_t below, uint32_t e, uint32_t e2) except -1:
    if c == 0 or c > below or nodes[c].mark != e:
        return cnt
    nodes[c].mark = e2
    _reserve(buf, bufcap, cnt + 1)
    buf[0][cnt] = <int32_t>c
    return cnt + 1


cdef int epoch_reset() except -1:
    global epoch
    cdef Py_ssize_t i
    for i in range(top):
        if nodes[i].nref or i == 0:  # (a dead slot's mark says FREED, or chains _pending)
            nodes[i].mark = 0
    epoch = 0
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _backward_from(Py_ssize_t root) except -1:
    global scratch_busy, pinned
    cdef int32_t* own = NULL
    cdef Py_ssize_t own_cap = 0, cnt
    cdef unsigned char* seen = NULL
    cdef _Order* order
    _clear_pending()
    pinned += 1  # the pass holds indices: a Python _backward must not trigger a compaction
    try:
        nodes[root].grad = 1.0
        order = _cached_order(root)
        if order != NULL:
            # recompute() has found this graph's nodes already (a replayed training step):
            # sweep that list, which is the order the scan would find, without marking
            _sweep_list(order.idx, order.nops)
        elif not scratch_busy:
            scratch_busy = True
            try:
                _reserve(&scratch, &scratch_cap, root + 1)
                _scan_sweep(root)
            finally:
                scratch_busy = False
        else:
            # backward() called from a Python _backward during another backward(): the outer
            # pass owns the marks, so this one keeps its own record of the nodes it has reached
            seen = <unsigned char*>PyMem_RawCalloc(<size_t>root + 1, 1)
            if seen == NULL:
                raise MemoryError()
            seen[0] = seen[root] = 1
            _reserve(&own, &own_cap, 1024)
            own[0] = <int32_t>root
            cnt = _collect(&own, &own_cap, 1, 0, seen)
            _sweep_list(own, cnt)
    finally:
        pinned -= 1
        PyMem_RawFree(own)
        PyMem_RawFree(seen)
    return 0
