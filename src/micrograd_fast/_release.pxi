# ---- freeing nodes: the iterative release -----------------------------------------------------
#
# Owns: what happens when a node's last reference goes (_release) -- the node and everything
# only it kept alive are freed without recursion, by a downward pass over the arena (_scan_free)
# or through the _pending list; the Python objects they owned (a user's backward callable, held
# Values, labels) are released afterwards, once the arena is consistent (Deferred); a freed top
# slot or edge block is given back at once, and an emptied arena starts over (_drain). A leaf
# whose facade lets go of it last, the commonest case, is freed on the spot (_release_quiet).


cdef struct Deferred:
    PyObject** items  # owned references, decref'd once the arena is consistent again
    Py_ssize_t n, cap


cdef enum:
    SPILL_SLOTS = 64

# where _defer keeps references when its buffer cannot grow (out of memory): released with the
# others, once the arena is consistent
cdef PyObject* _spill[SPILL_SLOTS]
cdef Py_ssize_t _nspill = 0


cdef void _defer(Deferred* d, PyObject* o) noexcept:
    """Keep an owned reference for later (no GC-tracked allocation here: it could run a collection).

    Out of memory, it goes into a small static reserve; when that is full too, the reference is
    leaked. Releasing it here instead would run its finalizer -- any Python code, which may make
    Values and compact the arena -- in the middle of a teardown."""
    global _nspill
    cdef void* tmp
    if o == NULL:
        return
    if d.n == d.cap:
        tmp = PyMem_RawRealloc(d.items, <size_t>(d.cap * 2 + 8) * sizeof(PyObject*))
        if tmp == NULL:
            if _nspill < SPILL_SLOTS:
                _spill[_nspill] = o
                _nspill += 1
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


cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define MGF_COLD __attribute__((noinline, cold))
    #else
    #define MGF_COLD
    #endif
    /* an index buffer grown (doubling, from 1024) to hold need entries; kept out of line:
       the loops that check for room rarely need it */
    static MGF_COLD int mgf_grow(int32_t** buf, Py_ssize_t* bufcap, Py_ssize_t need) {
        Py_ssize_t n = *bufcap ? 2 * *bufcap : 1024;
        void* p;
        while (n < need) n *= 2;
        p = PyMem_RawRealloc(*buf, (size_t)n * sizeof(int32_t));
        if (p == NULL) return -1;
        *buf = (int32_t*)p;
        *bufcap = n;
        return 0;
    }
    """
    int mgf_grow(int32_t** buf, Py_ssize_t* bufcap, Py_ssize_t need) nogil


cdef bint _no_room(int32_t** dying, Py_ssize_t* dcap, Py_ssize_t need) noexcept:
    """Grow _dying to hold need entries (dying[0] and dcap[0]: the caller's copies of it and its
    capacity); True when it cannot (out of memory: the caller queues the children on _pending
    instead)."""
    if need > _dying_cap:
        mgf_grow(&_dying, &_dying_cap, need)
    dying[0], dcap[0] = _dying, _dying_cap
    return need > _dying_cap


cdef void _forget_dying() noexcept:
    """Give _dying's memory back (with a big arena's: it grew with that arena's graphs)."""
    global _dying, _dying_cap
    PyMem_RawFree(_dying)
    _dying = NULL
    _dying_cap = 0


cdef inline void _drop_child(mgf_node* ns, Py_ssize_t c, int32_t* dying, Py_ssize_t* ndying,
                             Py_ssize_t* low, bint watch) noexcept:
    """A freed node lets go of child c; if that was c's last reference, c is marked DYING,
    recorded in dying and counted in low. (c may be slot 0, "no child": it never dies.) With
    watch (_cyclic_seen), a node that may be in a cycle of its own is checked too."""
    cdef mgf_node* cn = &ns[c]
    cn.nref -= 1
    if cn.nref == 0 and c:
        cn.mark = DYING
        dying[ndying[0]] = <int32_t>c
        ndying[0] += 1
        if c < low[0]:
            low[0] = c
    elif watch and cn.nref == 1 and (cn.op == OP_PY or cn.flags & FLAG_KEEP):
        _suspect(c)  # its facade alone holds it now: maybe in a cycle of its own (_cycles.pxi)


cdef void _drop_children_queued(mgf_node* ns, const int32_t* kids, Py_ssize_t m,
                                bint watch) noexcept:
    """_drop_child for m children when _dying cannot grow (out of memory): a child that dies
    goes on the _pending list (chained through its mark, no memory needed), which _drain
    frees next. The scan meets it not DYING, so it counts it as a live node left standing."""
    global _pending
    cdef Py_ssize_t k, c
    cdef mgf_node* cn
    for k in range(m):
        c = kids[k]
        cn = &ns[c]
        cn.nref -= 1
        if cn.nref == 0 and c:
            cn.mark = <uint32_t>_pending
            _pending = c
        elif watch and cn.nref == 1 and (cn.op == OP_PY or cn.flags & FLAG_KEEP):
            _suspect(c)


cdef enum:
    # _scan_free asks for the children of the node this many slots below the one it frees:
    # they are written a few nodes later, and a child is often far below its parent (the
    # previous layer of a graph), so its cache line would otherwise arrive only when needed
    PREFETCH_AHEAD = 32


cdef int _scan_free(Py_ssize_t j, Deferred* deferred) except -1:
    """Free node j, whose last reference went, and everything that dies with it (see
    _scan_free_as). Two copies of that loop: one for processes that have never made a node that
    can be in a cycle of its own (_cycles.pxi), which need not look for them."""
    cdef _Watching yes = 1
    cdef _NotWatching no = 0
    if _cyclic_seen:
        return _scan_free_as(j, deferred, yes)
    return _scan_free_as(j, deferred, no)


ctypedef unsigned char _NotWatching  # (two types, to make the compiler write two loops)
ctypedef signed char _Watching
ctypedef fused _Watch:
    _NotWatching
    _Watching


cdef int _scan_free_as(Py_ssize_t j, Deferred* deferred, _Watch mode) except -1:
    """Free node j, whose last reference went, and everything that dies with it.

    Children sit below their parents, so one downward pass from j meets every node that dies
    with it after all its parents have let go: the nodes are freed in index order, walking the
    arena's memory from high to low (a whole graph's teardown is a sequential sweep, not a hunt
    through a linked list), and the pass ends below the lowest node found dying. When the dying
    nodes are spread thinly over live ones, the pass stops early and hands the rest to the
    _pending list.

    The arena's count of live nodes and its top are brought up to date once, at the end."""
    global live, top, edead
    cdef Py_ssize_t start = j, low = j, skipped = 0, ndying = 0, first_live = 0, k
    cdef mgf_node* ns = nodes  # (_free_extras and _reserve never move the nodes)
    cdef mgf_node* n
    cdef mgf_node* ahead
    cdef int32_t* kids
    cdef int32_t pair[2]
    cdef int32_t* dying = _dying
    cdef Py_ssize_t dcap = _dying_cap  # (kept for the next release)
    cdef bint watch = _Watch is _Watching
    ns[j].mark = DYING
    try:
        while j >= low:  # (low >= 1: index 0 is nobody's child)
            n = &ns[j]
            ahead = &ns[j - PREFETCH_AHEAD if j > PREFETCH_AHEAD else 0]
            # (for an n-ary or Python node a and b are a count and a table entry: any address
            # will do for a hint, computed as an integer, see mgf_prefetch_below)
            mgf_prefetch_below(ns, ahead.a, 0)
            mgf_prefetch_below(ns, ahead.b, 0)
            if n.mark != DYING:
                if first_live == 0:
                    first_live = j
                skipped += 1
                j -= 1
                if skipped > 4 * (start - j - skipped) + 256:  # (start - j - skipped: freed)
                    break
                continue
            if n.op == OP_PY or n.flags & (FLAG_LABEL | FLAG_OPNAME | HELD_BITS):
                _free_extras(n, deferred)
            if _is_ext(n.op):  # an n-ary or PY node: its children in its edge block
                kids = _kids(n)
                # (room for every child to die)
                if ndying + n.a > dcap and _no_room(&dying, &dcap, ndying + n.a):
                    _drop_children_queued(ns, kids, n.a, watch)
                else:
                    for k in range(n.a):
                        _drop_child(ns, kids[k], dying, &ndying, &low, watch)
                if pinned == 0:  # the top block goes back at once (as the top slot does)
                    _free_edges(n.u.e, n.a)
                else:
                    edead += n.a
                n.u.e = 0
            else:
                # children in a and b. "No child" is slot 0, whose count means nothing
                # (creation raises it without a branch too): let go of likewise
                if ndying + 2 > dcap and _no_room(&dying, &dcap, ndying + 2):
                    pair[0], pair[1] = n.a, n.b
                    _drop_children_queued(ns, pair, 2, watch)
                else:
                    _drop_child(ns, n.a, dying, &ndying, &low, watch)
                    _drop_child(ns, n.b, dying, &ndying, &low, watch)
            n.op = OP_LEAF
            n.flags = 0
            n.a = n.b = 0
            n.mark = FREED  # (ns[j]'s facade is NULL already: a live facade counts in nref)
            j -= 1
    except BaseException:  # (_free_extras, out of memory): what is still dying waits on the list
        _requeue(j, dying, ndying)
        raise
    finally:  # (also when an exception is raised: the counts stay true)
        live -= start - j - skipped  # the nodes freed (j + 1 .. start, less those skipped)
        if start == top - 1 and pinned == 0:
            # the pass began at the top slot: the top comes down to the highest node left alive, so
            # the next node goes there. A training step's graph dies from its loss down, so the
            # arena (and the edge arena) shrinks back to the parameters and the next step reuses
            # the same, cache-warm memory without a compaction. (With nobody holding indices, no
            # freed slot is still referred to.)
            top = first_live + 1 if first_live else j + 1
    if j >= low:  # stopped early: the nodes still dying go to the list
        _requeue(j, dying, ndying)
    return 0


cdef void _requeue(Py_ssize_t j, int32_t* dying, Py_ssize_t ndying) noexcept:
    """Put node j and the ndying nodes recorded in dying on the _pending list, those of them
    still DYING (not freed yet): a later _drain frees them."""
    global _pending
    cdef Py_ssize_t t, c
    if nodes[j].mark == DYING:
        nodes[j].mark = <uint32_t>_pending
        _pending = j
    for t in range(ndying):
        c = dying[t]
        if nodes[c].mark == DYING:
            nodes[c].mark = <uint32_t>_pending
            _pending = c


cdef int _free_extras(mgf_node* n, Deferred* deferred) except -1:
    """What a dying node owns besides its children: a PY node's entry in _pyx (its callable and
    held Values, queued in deferred; the children it held are let go of), and its entries in
    the label and op-name tables."""
    global _pyx_free
    cdef Py_ssize_t k, x
    cdef int32_t* kids
    if n.op == OP_PY and n.b:
        x = n.b
        if _pyx[x].held != NULL:
            kids = _kids(n)
            for k in range(n.a):
                _held_down(kids[k])  # (_facade.pxi)
        _defer(deferred, _pyx[x].fn)
        _defer(deferred, _pyx[x].held)
        _pyx[x].fn = _pyx[x].held = NULL
        _pyx[x].next = _pyx_free
        _pyx_free = x
        n.b = 0
    # (each part is cleared once done: if a pop fails, the node is freed again later)
    if n.flags & FLAG_LABEL:
        _defer(deferred, _pop_side(_labels, n.seq))
        n.flags &= ~FLAG_LABEL
    if n.flags & FLAG_OPNAME:
        _defer(deferred, _pop_side(_opnames, n.seq))
        n.flags &= ~FLAG_OPNAME
    _held_forget(n)  # (a void count: _facade.pxi)
    n.flags &= ~HELD_BITS
    return 0


cdef int _clear_pending() except -1:
    """Free what waits on the _pending list before a pass that reads the marks of a range of
    slots (backward's scan, recompute's): the list is chained through marks, and a link could
    read as the pass's own epoch. Nodes wait there while a teardown is running -- code it runs
    (a finalizer) or another thread meanwhile may call backward() -- or after one failed (out
    of memory). As _release does: the releases this causes only queue their nodes; and pinned,
    so that the finalizers it may run cannot move the indices the caller holds."""
    global pinned, _draining
    # a drain already running (this thread's caller's, or another thread's waiting on Python
    # code) resets the flag itself when it ends: only the one that sets it here resets it
    cdef bint owner = not _draining
    if _pending == NIL:
        return 0
    pinned += 1
    _draining = True
    try:
        _drain()
    finally:
        if owner:
            _draining = False
        pinned -= 1
    return 0


cdef int _drain() except -1:
    global live, top, pinned, _pending, _want_compact, _nspill
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
                if _nspill:  # (what _defer could not keep, out of memory), as below
                    _nspill -= 1
                    o = _spill[_nspill]
                    pinned += 1
                    Py_DECREF(<object>o)
                    pinned -= 1
                    continue
                if _n_suspects == 0:
                    break
                pinned += 1  # (as below)
                _try_suspect()  # (_cycles.pxi)
                pinned -= 1
                continue
            # the arena is consistent: release one Python object (it may run any code, which may
            # queue more nodes -- but must not compact while any are queued)
            deferred.n -= 1
            o = deferred.items[deferred.n]
            pinned += 1
            Py_DECREF(<object>o)
            pinned -= 1
    finally:
        # (after an exception -- out of memory while freeing -- the nodes still dying wait on
        # _pending, and the arena is consistent: what was deferred is released all the same)
        while deferred.n or _nspill:
            if deferred.n:
                deferred.n -= 1
                o = deferred.items[deferred.n]
            else:
                _nspill -= 1
                o = _spill[_nspill]
            pinned += 1
            Py_DECREF(<object>o)
            pinned -= 1
        PyMem_RawFree(deferred.items)
    if live == 0 and pinned == 0:  # everything is gone: start over at the bottom
        top = 1
        _empty_edges()
        # and give a big arena's memory back; a smaller one (up to ~56 MB) is kept for the
        # next graph (a notebook cell run again), saving the unmapping now and the page faults then
        if cap > KEEP_SLOTS:
            _resize(INITIAL_SLOTS)
            _forget_dying()
            _forget_scratch()  # (_sweep.pxi)
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
    if n.op != OP_LEAF or n.flags & (FLAG_LABEL | FLAG_OPNAME | HELD_BITS) or live == 1:
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
