# ---- the node arena -------------------------------------------------------------------------
#
# Every node of every graph is a 48-byte record in one growable C array, addressed by its index
# (never by pointer: the array moves when it grows). Slot 0 is reserved, so index 0 means "none".
# A node lives while its Value facade lives or while a live node uses it as a child: nref counts
# one per live facade plus one per parent edge, exactly Python's reachability for micrograd's
# objects.
#
# Slots are handed out at the top only (bump allocation), and dead slots are reclaimed by sliding
# the live nodes down, order kept (compaction). So index order IS creation order, always: every
# child sits below its parents, and backward() can find its order with one downward scan
# (_sweep.pxi). Compaction moves nodes, so it runs only at the start of an operation -- before
# the operation has read any index -- and never while a backward() sweep or a _prev walk holds
# indices ("pinned"); then the arena grows instead. It runs when at least half of the slots in
# use are dead and leaves at least half of the arena free, so it costs O(1) per node amortised.
#
# The children of n-ary nodes (a neuron's dot: bias, weights, inputs) and of Python-backward
# nodes live in a second bump-allocated array, the edge arena: a node's u.e is where its `a`
# children start. Blocks are handed out in creation order, so backward() and teardown read them
# as sequentially as the nodes, and no node costs a malloc / free. Edges die with their node
# (counted in edead) and are slid down when the nodes are compacted. A Python-backward node's
# callable and held Values sit in a small side table, _pyx, at its index b.

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    /* u: x**k's exponent k; for n-ary and Python-backward nodes, where their children start
       in the edge arena */
    typedef union { double k; int64_t e; } mgf_u;

    typedef struct {
        double data;
        double grad;
        mgf_u u;                 /* x**k: the exponent k; n-ary / PY ops: edges[u.e ...] */
        uint64_t seq : 48;       /* creation number: the key of a node's label / op name */
        uint64_t op : 8;         /* OP_* */
        uint64_t flags : 8;      /* FLAG_* */
        int32_t a, b;            /* children (0 = none); n-ary / PY ops: a = number of children,
                                    b = 0 or the op's integer (_classify.pxi); PY: b = its
                                    entry in _pyx (0: none yet) */
        uint32_t nref;           /* +1 per live facade, +1 per parent edge */
        uint32_t mark;           /* epoch of the last topological sort that reached this node;
                                    during release: the next node on the list; during
                                    compaction: the node's new index */
    } mgf_node;

    /* The arena's arrays. Big ones (Linux, from 32 MiB: ~700k nodes) are 2 MiB-aligned and
       asked to be backed by transparent huge pages: a sweep over millions of nodes then misses
       the TLB far less (THP is often in `madvise` mode, so it must be asked for). Smaller ones
       do not: a huge page is resident whole once touched, which would add up to 2 MiB per
       array to a graph of a few thousand nodes. Growing copies the used part only. Plain
       malloc/free (not PyMem): the blocks are ours alone. */
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif

    /* a hint to fetch the line at p for writing; never faults, whatever p is */
    #if defined(__GNUC__) || defined(__clang__)
    #define mgf_prefetch_w(p) __builtin_prefetch((const void*)(p), 1, 3)
    #else
    #define mgf_prefetch_w(p) ((void)(p))
    #endif
    /* the same for the node k slots below node j of the array at base, computed as an address
       (integer arithmetic), so that it may fall below the array's start */
    #define mgf_prefetch_below(base, j, k) \
        mgf_prefetch_w((uintptr_t)(base) + ((uintptr_t)(j) - (uintptr_t)(k)) * sizeof(*(base)))

    #define MGF_HUGE ((size_t)2 << 20)
    static void* mgf_arena_realloc(void* old, size_t used, size_t size) {
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (size >= 16 * MGF_HUGE) {
            void* p = NULL;
            size_t rounded = (size + MGF_HUGE - 1) & ~(MGF_HUGE - 1);
            if (posix_memalign(&p, MGF_HUGE, rounded) != 0) return NULL;
            madvise(p, rounded, MADV_HUGEPAGE);  /* advice only: failure is harmless */
            if (old != NULL) {
                memcpy(p, old, used < size ? used : size);
                free(old);
            }
            return p;
        }
    #endif
        (void)used;
        return realloc(old, size);
    }
    """
    ctypedef union mgf_u:
        double k
        int64_t e
    ctypedef struct mgf_node:
        double data
        double grad
        mgf_u u
        uint64_t seq
        unsigned int op
        unsigned int flags
        int32_t a
        int32_t b
        uint32_t nref
        uint32_t mark
    void* mgf_arena_realloc(void* old, size_t used, size_t size) nogil
    void mgf_prefetch_w(const void* p) nogil
    void mgf_prefetch_below(const mgf_node* base, Py_ssize_t j, Py_ssize_t k) nogil

cdef enum:
    # op codes; the order groups them for the sweep's switch
    OP_LEAF = 0
    OP_ADD = 1
    OP_MUL = 2
    OP_POWK = 3      # x ** k, k a number (u.k)
    OP_RELU = 4
    OP_TANH = 5
    OP_EXP = 6
    OP_LOG = 7
    OP_SIGMOID = 8
    OP_POW = 9       # x ** y, both Values
    OP_DOT = 10      # n-ary: bias + w0*x0 + ... (children: bias, w..., x...)
    OP_SUM = 11      # n-ary: c0 + c1 + ...
    OP_SOFTMAX = 12      # n-ary over all the inputs (_classify.pxi); b = which output
    OP_LOG_SOFTMAX = 13  # n-ary, as softmax; b = which output
    OP_LOGSUMEXP = 14    # n-ary
    OP_CROSS_ENTROPY = 15  # n-ary over the logits; b = the target class
    OP_PY = 16       # LAST: children in the edge arena, backward a Python callable (_pyx, may be NULL)

    FLAG_INT_K = 1       # the exponent k was an int: the op is named '**2', not '**2.0'
    FLAG_LABEL = 2       # has an entry in _labels (keyed by seq, which compaction keeps)
    FLAG_OPNAME = 4      # has an entry in _opnames (hand-built nodes, or _op assigned)
    FLAG_KEEP = 8        # the node holds a reference to its facade (see _keep in _engine.pyx)
    HELD_ONE = 16        # flags' high 4 bits: how many Python-backward parents hold this
    HELD_MAX = 15        #   node's facade (see _hold); from HELD_MAX on, in a side table
    HELD_BITS = 0xF0

    NIL = 0xFFFFFFFF     # end of the release list
    MAX_SLOTS = 0x7FFFFFF0
    INITIAL_SLOTS = 4096
    KEEP_SLOTS = 1 << 20  # an emptied arena up to this capacity keeps its memory
    INITIAL_EDGES = 16384
    KEEP_EDGES = 1 << 22  # likewise for the edge arena (16 MiB)

cdef mgf_node* nodes = NULL     # the records
cdef PyObject** facades = NULL  # borrowed: each node's live Value, or NULL
cdef Py_ssize_t cap = 0         # slots allocated
cdef Py_ssize_t top = 1         # slots in use, dead or alive (slot 0 is reserved)
cdef Py_ssize_t live = 0        # live nodes
cdef uint64_t next_seq = 1      # the next creation number
cdef int pinned = 0             # > 0: someone holds node indices, compaction must wait
cdef Py_ssize_t compactions = 0

cdef int32_t* edges = NULL      # the children of n-ary / PY nodes, in blocks
cdef Py_ssize_t ecap = 0        # edges allocated
cdef Py_ssize_t etop = 0        # edges in use, dead or alive
cdef Py_ssize_t edead = 0       # edges of freed nodes (and blocks given back)
cdef bint _edges_unordered = False  # a block was given to an older node (_make_python_op)

# rare, per-node Python data lives beside the arena, keyed by creation number
cdef dict _labels = {}
cdef dict _opnames = {}

cdef int _resize(Py_ssize_t new_cap) except -1:
    """Reallocate the arrays to new_cap slots (>= top), each through a temporary."""
    global nodes, facades, cap
    cdef void* tmp
    if new_cap > MAX_SLOTS:
        new_cap = MAX_SLOTS
    if new_cap < top:
        raise MemoryError("micrograd_fast: the node arena is full (2**31 nodes)")
    tmp = mgf_arena_realloc(nodes, <size_t>top * sizeof(mgf_node), <size_t>new_cap * sizeof(mgf_node))
    if tmp == NULL:
        raise MemoryError()
    nodes = <mgf_node*>tmp
    tmp = mgf_arena_realloc(facades, <size_t>top * sizeof(PyObject*),
                            <size_t>new_cap * sizeof(PyObject*))
    if tmp == NULL:
        raise MemoryError()
    facades = <PyObject**>tmp
    if cap == 0:  # slot 0: the reserved "none" node
        memset(&nodes[0], 0, sizeof(mgf_node))
        facades[0] = NULL
    cap = new_cap
    return 0


cdef void _compact() noexcept:
    """Slide the live nodes down over the dead ones, keeping their order; fix every index held
    by a node (its children) or a facade (Value._i). The live edges slide down likewise. Pure
    C: no Python code can run meanwhile."""
    global top, compactions
    cdef Py_ssize_t i, p, new_top
    cdef mgf_node* n
    # 1. new index of every live node, in its mark (dead: 0; slot 0 stays 0)
    nodes[0].mark = 0
    p = 1
    for i in range(1, top):
        if nodes[i].nref:
            nodes[i].mark = <uint32_t>p
            p += 1
        else:
            nodes[i].mark = 0
    new_top = p  # == live + 1, as every op makes its nodes only once nothing can fail
    # 2. children to their new indices (children sit below parents: their marks are intact),
    #    each edge block moved down to its new place as it is rewritten
    _renumber_children()
    # 3. move, lowest first (a node only ever moves onto a slot already vacated)
    for i in range(1, top):
        if nodes[i].nref == 0:
            continue
        p = nodes[i].mark
        nodes[i].mark = 0
        if p != i:
            nodes[p] = nodes[i]
            facades[p] = facades[i]
            if facades[p] != NULL:
                (<Value>facades[p])._i = p
    top = new_top
    compactions += 1


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _renumber_children() noexcept:
    """Compaction's step 2: every live node's children to their new indices (in their marks);
    the edge blocks packed from 0 in node order on the way. In place when the blocks are in node
    order (each moves down, never over one not yet moved); else into a new array."""
    global edges, etop, edead, _edges_unordered
    cdef Py_ssize_t i, k, m, ep = 0
    cdef int32_t* dst = edges
    cdef int32_t* src
    cdef mgf_node* n
    cdef bint move = True
    if _edges_unordered:
        dst = <int32_t*>mgf_arena_realloc(NULL, 0, <size_t>max(ecap, 1) * sizeof(int32_t))
        if dst == NULL:  # no memory for a copy: the blocks stay where they are, renumbered
            dst = edges
            move = False
    for i in range(1, top):
        n = &nodes[i]
        if n.nref == 0:
            continue
        if n.op < OP_DOT:
            n.a = <int32_t>nodes[n.a].mark
            n.b = <int32_t>nodes[n.b].mark
            continue
        src = edges + n.u.e
        m = n.a
        if not move:
            ep = n.u.e
        for k in range(m):  # dst + ep <= src: an edge is read before its slot is written
            dst[ep + k] = <int32_t>nodes[src[k]].mark
        n.u.e = ep
        ep += m
    if not move:
        return
    if dst != edges:
        free(edges)
        edges = dst
        _edges_unordered = False
    etop = ep
    edead = 0


cdef bint _want_compact = False  # a big graph died: compact at the next operation's start


cdef inline bint _mostly_dead() noexcept:
    """At least half of the slots in use are dead: compaction pays for itself."""
    return top - 1 - live >= (top >> 1)


cdef inline bint _edges_mostly_dead() noexcept:
    """At least half of the edges in use are dead, and enough of them to pay for a compaction's
    walk over the nodes."""
    return 2 * edead >= etop and 4 * edead >= top


cdef int _make_room(Py_ssize_t k, Py_ssize_t ke=0) except -1:
    """Room for k more slots and ke more edges: compact when half the used slots (or edges) are
    dead; keep half the arena free afterwards (so compaction stays O(1) amortised), growing if
    need be. (The capacity stays: a training loop needs it again next step; it goes back when
    no node is left.)"""
    global _want_compact
    cdef Py_ssize_t want
    _want_compact = False
    # (not while nodes wait on the _pending list, chained by index: a teardown that ran out of
    # memory left them there, for the next release to free)
    if pinned == 0 and _pending == NIL and (
            _mostly_dead() or (etop + ke > ecap and _edges_mostly_dead())):
        _compact()
    if top + k > cap or (pinned == 0 and 2 * (top + k) > cap):
        want = cap
        while want < 2 * (top + k):
            want *= 2
        _resize(want)
    _reserve_edges(ke)  # (doubling)
    return 0


cdef inline int _reserve_slots(Py_ssize_t k) except -1:
    """Call at the start of an operation, before reading any node index: may move nodes."""
    if top + k > cap or _want_compact:
        _make_room(k)
    return 0


cdef inline int _reserve_room(Py_ssize_t k, Py_ssize_t ke) except -1:
    """_reserve_slots for an operation that makes ke edges too (an n-ary node's children)."""
    if top + k > cap or _want_compact or etop + ke > ecap:
        _make_room(k, ke)
    return 0


cdef inline Py_ssize_t _alloc_slot() except -1:
    """The next slot at the top (room was reserved by the caller; growing never moves indices)."""
    global top
    cdef Py_ssize_t i
    if top == cap:
        _resize(2 * cap)
    i = top
    top += 1
    return i


cdef inline Py_ssize_t _new_node(unsigned int op, double data, Py_ssize_t a, Py_ssize_t b) except -1:
    """A node with children a, b (0 = none); its nref starts at 0 (the caller adds its owner)."""
    global live, next_seq
    cdef Py_ssize_t i = _alloc_slot()
    cdef mgf_node* n = &nodes[i]
    n.data = data
    n.grad = 0.0
    n.u.k = 0.0
    n.seq = next_seq
    n.op = op
    n.flags = 0
    n.a = <int32_t>a
    n.b = <int32_t>b
    n.nref = 0
    n.mark = 0
    next_seq += 1
    live += 1
    facades[i] = NULL
    nodes[a].nref += 1  # slot 0 absorbs the "no child" increments: no branch here
    nodes[b].nref += 1
    return i


cdef int _reserve_edges(Py_ssize_t n) except -1:
    """Room for n more edges. Growing moves the array (never the offsets): hold no int32_t*
    into it across this call (nor _alloc_edges)."""
    global edges, ecap
    cdef Py_ssize_t want = ecap if ecap else INITIAL_EDGES
    cdef void* tmp
    if etop + n <= ecap:
        return 0
    while want < etop + n:
        want *= 2
    tmp = mgf_arena_realloc(edges, <size_t>etop * sizeof(int32_t), <size_t>want * sizeof(int32_t))
    if tmp == NULL:
        raise MemoryError()
    edges = <int32_t*>tmp
    ecap = want
    return 0


cdef inline Py_ssize_t _alloc_edges(Py_ssize_t n) except -1:
    """A block of n edges at the edge arena's top; returns where it starts. Called right before
    the block's node is made, after the operation's _reserve_slots (which may compact)."""
    global etop
    cdef Py_ssize_t o
    if etop + n > ecap:
        _reserve_edges(n)
    o = etop
    etop += n
    return o


cdef inline void _free_edges(Py_ssize_t o, Py_ssize_t n) noexcept:
    """Give back a block no node owns (the top one is reused at once)."""
    global etop, edead
    if o + n == etop:
        etop = o
    else:
        edead += n


cdef inline Py_ssize_t _ext_node(unsigned int op, double data, Py_ssize_t o,
                                 Py_ssize_t nchildren) except -1:
    """A node whose children are the block of nchildren edges at o (owned by the node, or given
    back on failure)."""
    cdef Py_ssize_t i
    if top == cap:  # (only where the caller reserved no slot)
        _grow_for_ext(o, nchildren)
    i = _new_node(op, data, 0, 0)  # cannot fail now
    nodes[i].u.e = o
    nodes[i].a = <int32_t>nchildren
    return i


cdef int _grow_for_ext(Py_ssize_t o, Py_ssize_t nchildren) except -1:
    """A slot for _ext_node's node, or the block given back and MemoryError."""
    try:
        _resize(2 * cap)
    except BaseException:
        _free_edges(o, nchildren)
        raise
    return 0


cdef Py_ssize_t _new_ext_node(unsigned int op, double data, Py_ssize_t nchildren) except -1:
    """A node whose children live in a new edge block (filled in by the caller)."""
    return _ext_node(op, data, _alloc_edges(nchildren), nchildren)


cdef inline int32_t* _kids(const mgf_node* n) noexcept nogil:
    """The children of an n-ary or PY node (valid until the next edge allocation)."""
    return edges + n.u.e


# A Python-backward node's Python objects: its callable (may be NULL) and the tuple of its
# children's Values it holds (see _hold), in _pyx[node.b]. Entry 0 is always empty.
cdef struct PyExtra:
    PyObject* fn
    PyObject* held
    Py_ssize_t next  # a free entry: the next free one (0: none)

cdef PyExtra* _pyx = NULL
cdef Py_ssize_t _pyx_cap = 0
cdef Py_ssize_t _pyx_free = 0  # the first free entry (0: none)


cdef int _pyx_reserve() except -1:
    """A free _pyx entry ready, so that the next _pyx_of cannot fail."""
    global _pyx, _pyx_cap, _pyx_free
    cdef Py_ssize_t k, new_cap
    cdef void* tmp
    if _pyx_free:
        return 0
    new_cap = 2 * _pyx_cap if _pyx_cap else 64
    tmp = PyMem_RawRealloc(_pyx, <size_t>new_cap * sizeof(PyExtra))
    if tmp == NULL:
        raise MemoryError()
    _pyx = <PyExtra*>tmp
    for k in range(_pyx_cap, new_cap):  # chain the new entries (0 stays empty)
        _pyx[k].fn = _pyx[k].held = NULL
        _pyx[k].next = k + 1 if k + 1 < new_cap else 0
    _pyx_free = max(_pyx_cap, 1)
    _pyx_cap = new_cap
    return 0


cdef PyExtra* _pyx_of(Py_ssize_t i) except NULL:
    """The entry of OP_PY node i, made when it has none (moves the table: hold no PyExtra*
    across this call)."""
    global _pyx_free
    cdef Py_ssize_t k
    if nodes[i].b == 0:
        _pyx_reserve()
        k = _pyx_free
        _pyx_free = _pyx[k].next
        nodes[i].b = <int32_t>k
    return &_pyx[nodes[i].b]


cdef inline PyObject* _py_fn(Py_ssize_t i) noexcept:
    """OP_PY node i's callable, borrowed (or NULL)."""
    return _pyx[nodes[i].b].fn if nodes[i].b else NULL


cdef inline PyObject* _py_held(Py_ssize_t i) noexcept:
    return _pyx[nodes[i].b].held if nodes[i].b else NULL


cdef inline bint _is_ext(unsigned int op) noexcept nogil:
    return op >= OP_DOT


cdef void _empty_edges() noexcept:
    """No node is left: the edge arena starts over (a big one gives its memory back)."""
    global edges, ecap, etop, edead, _edges_unordered
    etop = edead = 0
    _edges_unordered = False
    if ecap > KEEP_EDGES:
        free(edges)
        edges = NULL
        ecap = 0
