# ---- the node arena -------------------------------------------------------------------------
#
# Every node of every graph is a 48-byte record in one growable C array, addressed by its index
# (never by pointer: the array moves when it grows). Slot 0 is reserved, so index 0 means "none".
# A node lives while its Value facade lives or while a live node uses it as a child: nref counts
# one per live facade plus one per parent edge, exactly Python's reachability for micrograd's
# objects. Freed slots are marked in a bitmap and handed out lowest-first, so a new graph's nodes
# mostly sit in creation order (which backward() exploits, see _sweep.pxi).

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #if defined(_MSC_VER)
    #include <intrin.h>
    static int mgf_ctz64(uint64_t x) { unsigned long i; _BitScanForward64(&i, x); return (int)i; }
    #else
    static int mgf_ctz64(uint64_t x) { return __builtin_ctzll(x); }
    #endif

    /* children (and a user's backward callable) of n-ary and Python-backward nodes */
    typedef struct { PyObject *fn; int32_t child[1]; } mgf_ext;
    typedef union { double k; mgf_ext *ext; } mgf_u;

    typedef struct {
        double data;
        double grad;
        mgf_u u;                 /* x**k: the exponent k; n-ary / PY ops: their children */
        uint64_t seq : 48;       /* creation number: backward() runs newest first */
        uint64_t op : 8;         /* OP_* */
        uint64_t flags : 8;      /* FLAG_* */
        int32_t a, b;            /* children (0 = none); n-ary / PY ops: a = number of children */
        uint32_t nref;           /* +1 per live facade, +1 per parent edge */
        uint32_t mark;           /* epoch of the last topological sort that reached this node;
                                    on a freed node: the next node on the release list */
    } mgf_node;

    #define MGF_EXT_SIZE(n) (offsetof(mgf_ext, child) + ((n) > 0 ? (n) : 1) * sizeof(int32_t))
    """
    ctypedef struct mgf_ext:
        PyObject* fn
        int32_t child[1]
    ctypedef union mgf_u:
        double k
        mgf_ext* ext
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
    int mgf_ctz64(uint64_t x) nogil
    size_t MGF_EXT_SIZE(Py_ssize_t n) nogil

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
    OP_PY = 12       # children in u.ext, backward is a Python callable (u.ext.fn, may be NULL)

    FLAG_INT_K = 1       # the exponent k was an int: the op is named '**2', not '**2.0'
    FLAG_LABEL = 2       # has an entry in _labels
    FLAG_OPNAME = 4      # has an entry in _opnames (hand-built nodes, or _op assigned)

    NIL = 0xFFFFFFFF     # end of the release list
    MAX_SLOTS = 0x7FFFFFF0

cdef mgf_node* nodes = NULL     # the records
cdef PyObject** facades = NULL  # borrowed: each node's live Value, or NULL
cdef uint64_t* freebits = NULL  # bit i set: slot i (< top) is free
cdef Py_ssize_t cap = 0         # slots allocated
cdef Py_ssize_t top = 1         # slots ever handed out (high-water mark); slot 0 is reserved
cdef Py_ssize_t hint = 0        # no free bit below word `hint` of freebits
cdef Py_ssize_t live = 0        # nodes in use
cdef uint64_t next_seq = 1      # the next creation number

# rare, per-node Python data lives beside the arena, keyed by slot
cdef dict _labels = {}
cdef dict _opnames = {}


cdef int _grow() except -1:
    """Double the arena (amortised O(1) per node); every array grows through a temporary."""
    global nodes, facades, freebits, cap
    cdef Py_ssize_t new_cap = cap * 2 if cap else 4096
    cdef Py_ssize_t old_words = cap >> 6, new_words
    cdef void* tmp
    if new_cap > MAX_SLOTS:
        new_cap = MAX_SLOTS
    if new_cap <= cap:
        raise MemoryError("micrograd_fast: the node arena is full (2**31 nodes)")
    new_words = new_cap >> 6
    tmp = PyMem_RawRealloc(nodes, <size_t>new_cap * sizeof(mgf_node))
    if tmp == NULL:
        raise MemoryError()
    nodes = <mgf_node*>tmp
    tmp = PyMem_RawRealloc(facades, <size_t>new_cap * sizeof(PyObject*))
    if tmp == NULL:
        raise MemoryError()
    facades = <PyObject**>tmp
    tmp = PyMem_RawRealloc(freebits, <size_t>new_words * sizeof(uint64_t))
    if tmp == NULL:
        raise MemoryError()
    freebits = <uint64_t*>tmp
    memset(&freebits[old_words], 0, <size_t>(new_words - old_words) * sizeof(uint64_t))
    if cap == 0:  # slot 0: the reserved "none" node
        memset(&nodes[0], 0, sizeof(mgf_node))
        facades[0] = NULL
    cap = new_cap
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline Py_ssize_t _alloc_slot() except -1:
    """The lowest free slot (a bitmap scan from `hint`), else a fresh one at the top."""
    global hint, top
    cdef Py_ssize_t w = hint, nwords = (top + 63) >> 6, i
    cdef uint64_t bits
    while w < nwords:
        bits = freebits[w]
        if bits:
            freebits[w] = bits & (bits - 1)
            hint = w
            return (w << 6) | mgf_ctz64(bits)
        w += 1
    hint = w
    if top == cap:
        _grow()
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


cdef Py_ssize_t _new_ext_node(unsigned int op, double data, Py_ssize_t nchildren) except -1:
    """A node whose children live in an mgf_ext block (filled in by the caller)."""
    cdef mgf_ext* ext = <mgf_ext*>PyMem_Malloc(MGF_EXT_SIZE(nchildren))
    cdef Py_ssize_t i
    if ext == NULL:
        raise MemoryError()
    ext.fn = NULL
    try:
        i = _new_node(op, data, 0, 0)
    except BaseException:
        PyMem_Free(ext)
        raise
    nodes[i].u.ext = ext
    nodes[i].a = <int32_t>nchildren
    return i


cdef inline bint _is_ext(unsigned int op) noexcept nogil:
    return op >= OP_DOT


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


cdef PyObject* _pop_side(dict table, Py_ssize_t j) except? NULL:
    """Remove table[j]; return the owned value (or NULL)."""
    cdef object v = table.pop(j, None)
    if v is None:
        return NULL
    Py_INCREF(v)
    return <PyObject*>v


cdef int _release(Py_ssize_t i) except -1:
    """Drop one reference to node i; free it, and whatever only it kept alive, when none is left.

    Iterative: freed nodes are chained through their `mark` field, so releasing a 10**7-node
    chain needs no stack and no memory. Python objects owned by freed nodes (a user's backward
    callable, labels) are released only after the arena is consistent again, because releasing
    them can run arbitrary Python code -- even code that builds or frees nodes.
    """
    global live, hint, top
    cdef Py_ssize_t j, c, k, head
    cdef mgf_ext* ext
    cdef Deferred deferred
    deferred.items = NULL
    deferred.n = deferred.cap = 0
    nodes[i].nref -= 1
    if nodes[i].nref:
        return 0
    head = i
    nodes[i].mark = NIL
    while head != NIL:
        j = head
        head = nodes[j].mark
        if _is_ext(nodes[j].op):
            ext = nodes[j].u.ext
            for k in range(nodes[j].a):
                c = ext.child[k]
                nodes[c].nref -= 1
                if nodes[c].nref == 0:
                    nodes[c].mark = <uint32_t>head
                    head = c
            _defer(&deferred, ext.fn)
            PyMem_Free(ext)
            nodes[j].u.ext = NULL
        else:
            c = nodes[j].a
            if c:
                nodes[c].nref -= 1
                if nodes[c].nref == 0:
                    nodes[c].mark = <uint32_t>head
                    head = c
            c = nodes[j].b
            if c:
                nodes[c].nref -= 1
                if nodes[c].nref == 0:
                    nodes[c].mark = <uint32_t>head
                    head = c
        if nodes[j].flags & FLAG_LABEL:
            _defer(&deferred, _pop_side(_labels, j))
        if nodes[j].flags & FLAG_OPNAME:
            _defer(&deferred, _pop_side(_opnames, j))
        nodes[j].op = OP_LEAF
        nodes[j].flags = 0
        facades[j] = NULL
        freebits[j >> 6] |= (<uint64_t>1) << (j & 63)
        if (j >> 6) < hint:
            hint = j >> 6
        live -= 1
    if live == 0:  # everything is gone: start over at the bottom, keeping the memory
        memset(freebits, 0, <size_t>((top + 63) >> 6) * sizeof(uint64_t))
        top = 1
        hint = 0
    # now the arena is consistent: releasing these may run Python code (a closure's Values ...)
    for k in range(deferred.n):
        Py_DECREF(<object>deferred.items[k])
    PyMem_RawFree(deferred.items)
    return 0


cdef void _release_noexcept(Py_ssize_t i) noexcept:
    """_release for deallocators, which cannot raise."""
    try:
        _release(i)
    except BaseException:
        PyErr_WriteUnraisable(None)


def arena_stats():
    """Statistics of the node arena: live nodes, capacity, high-water mark, memory."""
    node_bytes = sizeof(mgf_node) + sizeof(PyObject*)  # record + facade pointer
    return {
        "live": live,
        "capacity": cap,
        "high_water": top - 1,
        "free_slots": top - 1 - live,
        "node_size": sizeof(mgf_node),
        "bytes_per_node": node_bytes,
        "bytes": cap * node_bytes + (cap >> 6) * sizeof(uint64_t),
    }
