# ---- freeing nodes: the iterative release -----------------------------------------------------
#
# Owns: what happens when a node's last reference goes (_release) -- the node and everything
# only it kept alive are freed without recursion, by a downward pass over the arena (_scan_free)
# or through the _pending list; the Python objects they owned (a user's backward callable, held
# Values, labels) are released afterwards, once the arena is consistent (Deferred); a freed top
# slot or edge block is given back at once, and an emptied arena starts over (_drain).


cdef struct Deferred:
    PyObject** items  # owned references, decref'd once the arena is consistent again
    Py_ssize_t n, cap


cdef void _defer(Deferred* d, PyObject* o) noexcept:
    """Keep an owned reference for later (no GC-tracked allocation here: it could run a collection)."""
    cdef void* tmp
    if o == NULL:
        return
    if d.n == d.cap:
        tmp = PyMem_RawRealloc(d.items, <size_t>(d.cap * 2 + 8) * sizeof(PyObject*))
        if tmp == NULL:  # out of memory: release it now (safe unless it runs Python code)
            Py_DECREF(<object>o)
            return
        d.items = <PyObject**>tmp
        d.cap = d.cap * 2 + 8
    d.items[d.n] = o
    d.n += 1


cdef PyObject* _pop_side(dict table, uint64_t key) except? NULL:
    """Remove table[key]; return the owned value (or NULL)."""
    cdef object v = table.pop(key, None)
    if v is None:
        return NULL
    Py_INCREF(v)
    return <PyObject*>v


cdef Py_ssize_t _pending = NIL  # nodes whose last reference went, chained through `mark`
cdef bint _draining = False     # a _release is freeing nodes: nested calls only add to _pending


cdef inline void _unhold(Py_ssize_t c) noexcept:
    cdef unsigned int held = nodes[c].flags >> 4
    if held and held != HELD_MAX:
        nodes[c].flags -= HELD_ONE


cdef int _release(Py_ssize_t i) except -1:
    """Drop one reference to node i; free it, and whatever only it kept alive, when none is left.

    Iterative: freed nodes are chained through their `mark` field, so releasing a 10**7-node
    chain needs no stack and no memory. Python objects owned by freed nodes (a user's backward
    callable, the Values it holds, labels) are released only after the arena is consistent
    again, one at a time, because releasing them can run arbitrary Python code -- even code that
    builds or frees nodes. A release that happens meanwhile (a held Value dying) only queues its
    node here, so chains of Python-backward nodes are freed without recursion too.
    """
    global _pending, _draining
    nodes[i].nref -= 1
    if nodes[i].nref:
        return 0
    nodes[i].mark = <uint32_t>_pending
    _pending = i
    if _draining:
        return 0
    _draining = True
    try:
        _drain()
    finally:
        _draining = False
    return 0


cdef enum:
    DYING = 0xFFFFFFFE  # mark of a node that _scan_free found dead but has not freed yet
    FREED = 0xFFFFFFFD  # mark of a dead slot (until compaction or reuse)

cdef int32_t* _dying = NULL  # the nodes the current _scan_free marked DYING (its fallback's list)
cdef Py_ssize_t _dying_cap = 0


cdef enum:
    # _scan_free asks for the children of the node this many slots below the one it frees:
    # they are written a few nodes later, and a child is often far below its parent (the
    # previous layer of a graph), so its cache line would otherwise arrive only when needed
    PREFETCH_AHEAD = 32


cdef int _scan_free(Py_ssize_t j, Deferred* deferred) except -1:
    """Free node j, whose last reference went, and everything that dies with it.

    Children sit below their parents, so one downward pass from j meets every node that dies
    with it after all its parents have let go: the nodes are freed in index order, walking the
    arena's memory from high to low (a whole graph's teardown is a sequential sweep, not a hunt
    through a linked list), and the pass ends below the lowest node found dying. When the dying
    nodes are spread thinly over live ones, the pass stops early and hands the rest to the
    _pending list.

    A leaf, unary or binary node without side-table entries -- nearly every node of a step's
    graph -- is freed inline; the rest go through _free_node. The arena's count of live nodes
    and its top are brought up to date once, at the end."""
    global _pending, live, top
    cdef Py_ssize_t start = j, low = j, skipped = 0, ndying = 0, first_live = 0
    cdef Py_ssize_t before, t, c
    cdef mgf_node* ns = nodes  # (_free_node and _reserve never move the nodes)
    cdef mgf_node* n
    cdef mgf_node* cn
    cdef mgf_node* ahead
    cdef int32_t* dying
    # room for every node below j (each is recorded once at most, when it starts dying), so no
    # check per node; as backward()'s scratch, the buffer is kept for the next release
    _reserve(&_dying, &_dying_cap, start)
    dying = _dying
    ns[j].mark = DYING
    try:
        while j >= low:  # (low >= 1: index 0 is nobody's child)
            n = &ns[j]
            ahead = &ns[j - PREFETCH_AHEAD if j > PREFETCH_AHEAD else 0]
            mgf_prefetch_w(&ns[ahead.a])
            mgf_prefetch_w(&ns[ahead.b])
            if n.mark != DYING:
                if first_live == 0:
                    first_live = j
                skipped += 1
                j -= 1
                if skipped > 4 * (start - j - skipped) + 256:  # (start - j - skipped: freed)
                    break
                continue
            if _is_ext(n.op) or n.flags & (FLAG_LABEL | FLAG_OPNAME):
                before = ndying
                _free_node(j, deferred, &ndying)
                for t in range(before, ndying):
                    if dying[t] < low:
                        low = dying[t]
            else:
                # children in a and b. "No child" is slot 0, whose count means nothing (creation
                # raises it without a branch too): it is let go of likewise, and never dies
                c = n.a
                cn = &ns[c]
                cn.nref -= 1
                if cn.nref == 0 and c:
                    cn.mark = DYING
                    dying[ndying] = <int32_t>c
                    ndying += 1
                    if c < low:
                        low = c
                c = n.b
                cn = &ns[c]
                cn.nref -= 1
                if cn.nref == 0 and c:
                    cn.mark = DYING
                    dying[ndying] = <int32_t>c
                    ndying += 1
                    if c < low:
                        low = c
                n.op = OP_LEAF
                n.flags = 0
                n.a = n.b = 0
                n.mark = FREED  # (ns[j]'s facade is NULL already: a live facade counts in nref)
            j -= 1
    finally:  # (also when _free_node or _reserve raise: the counts stay true)
        live -= start - j - skipped  # the nodes freed (j + 1 .. start, less those skipped)
        if start == top - 1 and pinned == 0:
            # the pass began at the top slot: the top comes down to the highest node left alive, so
            # the next node goes there. A training step's graph dies from its loss down, so the
            # arena (and the edge arena) shrinks back to the parameters and the next step reuses
            # the same, cache-warm memory without a compaction. (With nobody holding indices, no
            # freed slot is still referred to.)
            top = first_live + 1 if first_live else j + 1
    if j >= low:  # stopped early: the nodes still dying go to the list
        for t in range(ndying):
            c = dying[t]
            if ns[c].mark == DYING:
                ns[c].mark = <uint32_t>_pending
                _pending = c
    return 0


cdef inline void _drop_edge(Py_ssize_t c, Py_ssize_t* ndying) noexcept:
    """One parent lets go of child c; if that was its last reference, c is marked DYING and
    recorded in _dying (_scan_free reserved the room)."""
    nodes[c].nref -= 1
    if nodes[c].nref == 0:
        nodes[c].mark = DYING
        _dying[ndying[0]] = <int32_t>c
        ndying[0] += 1


cdef inline int _free_node(Py_ssize_t j, Deferred* deferred, Py_ssize_t* ndying) except -1:
    """Drop node j's references to its children (one that loses its last is marked DYING and
    recorded in _dying), queue its Python objects in deferred, and leave its slot dead."""
    global edead, _pyx_free
    cdef Py_ssize_t k, m, x
    cdef int32_t* kids
    cdef mgf_node* n = &nodes[j]
    if not _is_ext(n.op):  # a leaf, unary or binary node: children in a and b
        if n.a:
            _drop_edge(n.a, ndying)
        if n.b:
            _drop_edge(n.b, ndying)
    else:
        m = n.a
        kids = _kids(n)
        if n.op == OP_PY and n.b:
            x = n.b
            if _pyx[x].held != NULL:
                for k in range(m):
                    _unhold(kids[k])
            _defer(deferred, _pyx[x].fn)
            _defer(deferred, _pyx[x].held)
            _pyx[x].fn = _pyx[x].held = NULL
            _pyx[x].next = _pyx_free
            _pyx_free = x
        for k in range(m):
            _drop_edge(kids[k], ndying)
        if pinned == 0:  # the top block goes back at once (as the top slot does, in _scan_free)
            _free_edges(n.u.e, m)
        else:
            edead += m
        n.u.e = 0
    if n.flags & (FLAG_LABEL | FLAG_OPNAME):
        if n.flags & FLAG_LABEL:
            _defer(deferred, _pop_side(_labels, n.seq))
        if n.flags & FLAG_OPNAME:
            _defer(deferred, _pop_side(_opnames, n.seq))
    n.op = OP_LEAF
    n.flags = 0
    n.a = n.b = 0
    n.mark = FREED  # (facades[j] is NULL already: a live facade counts in nref)
    return 0


cdef int _drain() except -1:
    global live, top, pinned, _pending, _want_compact
    cdef Py_ssize_t j
    cdef PyObject* o
    cdef Deferred deferred
    deferred.items = NULL
    deferred.n = deferred.cap = 0
    try:
        while True:
            while _pending != NIL:
                j = _pending
                _pending = nodes[j].mark
                nodes[j].mark = 0
                _scan_free(j, &deferred)
            if deferred.n == 0:
                break
            # the arena is consistent: release one Python object (it may run any code, which may
            # queue more nodes -- but must not compact while any are queued)
            deferred.n -= 1
            o = deferred.items[deferred.n]
            pinned += 1
            Py_DECREF(<object>o)
            pinned -= 1
    finally:
        PyMem_RawFree(deferred.items)
    if live == 0 and pinned == 0:  # everything is gone: start over at the bottom
        top = 1
        _empty_edges()
        # and give a big arena's memory back; a smaller one (up to ~56 MB) is kept for the
        # next graph (a notebook cell run again), saving the unmapping now and the page faults then
        if cap > KEEP_SLOTS:
            _resize(INITIAL_SLOTS)
        return 0
    _settle_top()
    return 0


cdef inline void _settle_top() noexcept:
    """After nodes were freed (not all of them): the top comes down past dead slots, and mostly
    dead slots ask for a compaction."""
    global top, _want_compact
    if pinned == 0:  # slots freed earlier, now at the top too (their graph died piecemeal)
        while top > 1 and nodes[top - 1].mark == FREED:
            top -= 1
    if top > 4 * INITIAL_SLOTS and _mostly_dead():
        # mostly dead slots: the next operation compacts (here, indices may still be in use),
        # so that backward()'s downward pass does not wade through them
        _want_compact = True


cdef inline bint _release_quiet(Py_ssize_t i) noexcept:
    """Drop one reference to node i if that runs no Python code and frees no other node: the
    node lives on, or it is a leaf with no side-table entries that is not the last node (a
    leaf made and dropped in a loop, an input row). Returns whether it did; if not, the caller
    goes through _release."""
    global live
    cdef mgf_node* n = &nodes[i]
    if n.nref > 1:
        n.nref -= 1
        return True
    if n.op != OP_LEAF or n.flags & (FLAG_LABEL | FLAG_OPNAME) or live == 1:
        return False
    n.nref = 0
    n.flags = 0
    n.mark = FREED  # (a leaf's children are slot 0: nothing else to let go of)
    live -= 1
    _settle_top()
    return True


cdef void _release_noexcept(Py_ssize_t i) noexcept:
    """_release for deallocators, which cannot raise."""
    if _release_quiet(i):  # the common cases: no exception state to guard
        return
    try:
        _release(i)
    except BaseException:
        PyErr_WriteUnraisable(None)
