# ---- the facade's life cycle and GC support ----------------------------------------------------
#
# Owns: how a Value object is made (freelist), bound to its node (_own / _facade), kept alive by
# its node when it is more than a handle (_keep: subclass instances, extra attributes), and how
# it dies (_value_dealloc). Invariants: a node's `facades[i]` is its live Value or NULL, and each
# live facade counts one in its node's nref; a Value is tracked by the cyclic GC only once it can
# be part of a cycle (an instance dict, a Python backward callable); a deallocator that may run
# Python code saves and restores a pending exception.


cdef int _uninitialised() except -1:
    raise AttributeError("this Value has no node: Value.__init__ was not called")


cdef int _no_deleter(object v, str name) except -1:
    # what Python says for a property without a deleter (the reference engine's)
    raise AttributeError(f"property {name!r} of {type(v).__name__!r} object has no deleter")


cdef enum:
    FREELIST_SIZE = 8192

cdef PyObject* _free_facades[FREELIST_SIZE]  # dead Values kept for reuse (untracked, zeroed)
cdef int _n_free = 0
cdef _TypeSlots* _value_type = NULL
cdef Py_ssize_t _anchor_offset = 0  # where Value._gc_anchor sits in the object


cdef inline Value _fresh():
    """A new facade not yet bound to a node (made first, so a failure cannot orphan a node)."""
    global _n_free
    cdef PyObject* o
    cdef Value v
    if _n_free:
        _n_free -= 1
        o = _free_facades[_n_free]
        mgf_revive(o, _value_type)
        return mgf_take(o)
    v = Value.__new__(Value)
    _drop_anchor(v)
    PyObject_GC_UnTrack(<PyObject*>v)  # tracked only once it can be part of a cycle: _track()
    return v


cdef inline void _drop_anchor(Value v) noexcept:
    # Cython's tp_new sets the unused _gc_anchor field to None; NULL keeps deallocation cheap
    cdef PyObject** anchor = <PyObject**>(<char*><PyObject*>v + _anchor_offset)
    Py_XDECREF(anchor[0])
    anchor[0] = NULL


cdef inline Value _own(Value v, Py_ssize_t i):
    """Bind facade v to node i."""
    nodes[i].nref += 1
    facades[i] = <PyObject*>v
    v._i = i
    return v


cdef Value _facade(Py_ssize_t i):
    """Node i's live facade, or a new one registered in the node (so identity is stable)."""
    if facades[i] != NULL:
        return <Value>facades[i]
    return _own(_fresh(), i)


cdef inline void _track(Value v) noexcept:
    if not PyObject_GC_IsTracked(<PyObject*>v):
        PyObject_GC_Track(<PyObject*>v)


cdef void _keep(Value v) noexcept:
    """Let v's node hold a reference to v, so the object lives as long as its node does.

    A plain Value is only a handle: when it dies and its node lives on (inside a graph), _prev
    makes an equal new one. An instance of a subclass, or one carrying extra attributes
    (p.m = 0.0), is more than a handle -- micrograd's graph keeps that very object -- so such a
    facade is kept by its node. The cycle (facade -> node -> facade) is reported to the GC by
    the facade itself while it is the node's only owner (_value_traverse), and broken by
    _value_clear, so it is collected once nothing else needs it."""
    cdef Py_ssize_t i = v._i
    global _cyclic_seen
    if i and not (nodes[i].flags & FLAG_KEEP):
        Py_INCREF(v)
        nodes[i].flags |= FLAG_KEEP
        _cyclic_seen = True  # (_cycles.pxi)
        _track(v)


cdef void _unkeep(Value v) noexcept:
    """Undo _keep (the caller holds its own reference to v)."""
    cdef Py_ssize_t i = v._i
    if i and nodes[i].flags & FLAG_KEEP:
        nodes[i].flags &= ~FLAG_KEEP
        Py_DECREF(v)


cdef inline Py_ssize_t _index(Value v) except 0:
    if v._i == 0:
        _uninitialised()
    return v._i

cdef tuple _child_values(Py_ssize_t i):
    """Node i's children as Values, in order (made where their facades are gone)."""
    global pinned
    cdef list out
    cdef Py_ssize_t k
    pinned += 1  # making facades may run Python code (a GC pass): keep indices still
    try:
        out = []  # (an allocation too: after the pin)
        if _is_ext(nodes[i].op):
            for k in range(nodes[i].a):
                out.append(_facade(_kids(&nodes[i])[k]))  # (the arena may grow meanwhile)
        else:
            if nodes[i].a:
                out.append(_facade(nodes[i].a))
            if nodes[i].b:
                out.append(_facade(nodes[i].b))
    finally:
        pinned -= 1
    return tuple(out)


cdef int _hold(Py_ssize_t i, tuple values) except -1:
    """Let the Python-backward node i hold its children's Values, as micrograd's _prev does.

    A user's backward callable usually refers to them (the lecture's closures do) and often to
    the node's own Value, making reference cycles the GC must be able to see whole. A Value may
    report what its node holds only while nothing but itself keeps the node alive; holding the
    children's Values makes a parent that is a Python-backward node such a keeper only while it
    keeps the Value alive too, so it need not count (HELD_* in the flags; _sole_owner). Then a
    chain of hand-built nodes is garbage for the GC all at once, not one level per collection.
    """
    global _cyclic_seen
    cdef PyExtra* x = _pyx_of(i)
    cdef int32_t* kids = _kids(&nodes[i])
    cdef Py_ssize_t k, c
    _cyclic_seen = True  # every PY node comes here (_cycles.pxi)
    if x.held != NULL:
        return 0
    Py_INCREF(values)
    x.held = <PyObject*>values
    for k in range(nodes[i].a):
        c = kids[k]
        if k < len(values) and (<Value>values[k])._i == c:
            _held_up(c)
        # (else a GC pass while the Values were made ran a finalizer that re-bound this one
        # with Value.__init__: the tuple holds another node's Value, not c's)


# ---- the held count: how many Python-backward parents hold a node's facade -------------------
#
# Kept in the flags' high 4 bits up to 14; at HELD_MAX (15) the rest is in a small C table keyed
# by the node's seq (which compaction keeps), so the count stays exact however many hand-built
# parents share a child -- an inexact count would keep its facade from ever reporting a cycle.
# "Void" (the node's facade was re-bound to another node by Value.__init__: the parents' held
# Values now stand for that one) means not known: the facade never reports the node's contents.

cdef extern from *:
    """
    typedef struct { uint64_t key; uint32_t val; } mgf_held_slot;  /* key: seq + 1; 0: empty */
    static mgf_held_slot* mgf_held_tab = NULL;
    static size_t mgf_held_cap = 0, mgf_held_n = 0;
    static int mgf_held_broken = 0;  /* an entry could not be stored: counts at 15 are unknown */
    #define MGF_HELD_VOID 0xFFFFFFFFu

    static size_t mgf_held_home(uint64_t key) {
        return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 24) & (mgf_held_cap - 1);
    }

    static mgf_held_slot* mgf_held_find(uint64_t seq) {
        size_t h;
        uint64_t key = seq + 1;
        if (mgf_held_cap == 0)
            return NULL;
        for (h = mgf_held_home(key);; h = (h + 1) & (mgf_held_cap - 1)) {
            if (mgf_held_tab[h].key == key)
                return &mgf_held_tab[h];
            if (mgf_held_tab[h].key == 0)
                return NULL;
        }
    }

    static int mgf_held_grow(void) {
        size_t ncap = mgf_held_cap ? 2 * mgf_held_cap : 64, ocap = mgf_held_cap, k, h;
        mgf_held_slot* old = mgf_held_tab;
        mgf_held_slot* t = (mgf_held_slot*)PyMem_RawCalloc(ncap, sizeof(mgf_held_slot));
        if (t == NULL)
            return -1;
        mgf_held_tab = t;
        mgf_held_cap = ncap;
        for (k = 0; k < ocap; k++)
            if (old[k].key) {
                for (h = mgf_held_home(old[k].key); t[h].key; h = (h + 1) & (ncap - 1))
                    ;
                t[h] = old[k];
            }
        PyMem_RawFree(old);
        return 0;
    }

    /* seq's entry set to val (added if new); 0 if there was no room for it */
    static int mgf_held_set(uint64_t seq, uint32_t val) {
        mgf_held_slot* s = mgf_held_find(seq);
        uint64_t key = seq + 1;
        size_t h;
        if (s != NULL) {
            s->val = val;
            return 1;
        }
        if (2 * (mgf_held_n + 1) > mgf_held_cap && mgf_held_grow() < 0
                && mgf_held_n + 1 >= mgf_held_cap)
            return 0;
        for (h = mgf_held_home(key); mgf_held_tab[h].key; h = (h + 1) & (mgf_held_cap - 1))
            ;
        mgf_held_tab[h].key = key;
        mgf_held_tab[h].val = val;
        mgf_held_n++;
        return 1;
    }

    /* whether h lies in (i, j] going round the table */
    static int mgf_held_between(size_t i, size_t h, size_t j) {
        return i <= j ? (i < h && h <= j) : (i < h || h <= j);
    }

    static void mgf_held_del(uint64_t seq) {
        mgf_held_slot* s = mgf_held_find(seq);
        size_t i, j, mask = mgf_held_cap - 1;
        if (s == NULL)
            return;
        i = (size_t)(s - mgf_held_tab);
        mgf_held_tab[i].key = 0;
        mgf_held_n--;
        for (j = (i + 1) & mask; mgf_held_tab[j].key; j = (j + 1) & mask)
            if (!mgf_held_between(i, mgf_held_home(mgf_held_tab[j].key), j)) {
                mgf_held_tab[i] = mgf_held_tab[j];  /* (backward shift: no tombstones) */
                mgf_held_tab[j].key = 0;
                i = j;
            }
    }
    """
    ctypedef struct mgf_held_slot:
        uint32_t val
    mgf_held_slot* mgf_held_find(uint64_t seq) noexcept
    bint mgf_held_set(uint64_t seq, uint32_t val) noexcept
    void mgf_held_del(uint64_t seq) noexcept
    bint mgf_held_broken
    uint32_t MGF_HELD_VOID


cdef inline Py_ssize_t _held_count(Py_ssize_t i) noexcept:
    """How many Python-backward parents hold node i's facade (see _hold); -1: not known."""
    cdef unsigned int bits = nodes[i].flags >> 4
    cdef mgf_held_slot* s
    if bits != HELD_MAX:
        return bits
    if mgf_held_broken:
        return -1
    s = mgf_held_find(nodes[i].seq)
    if s == NULL:
        return HELD_MAX
    if s.val == MGF_HELD_VOID:
        return -1
    return HELD_MAX + s.val


cdef void _held_up(Py_ssize_t c) noexcept:
    """One more Python-backward parent holds node c's facade."""
    global mgf_held_broken
    cdef mgf_held_slot* s
    if (nodes[c].flags >> 4) != HELD_MAX:
        nodes[c].flags += HELD_ONE
        return
    s = mgf_held_find(nodes[c].seq)
    if s != NULL:
        if s.val != MGF_HELD_VOID:
            s.val += 1
    elif not mgf_held_set(nodes[c].seq, 1):
        mgf_held_broken = True  # (out of memory: from now on, counts at 15 are not known)


cdef void _held_down(Py_ssize_t c) noexcept:
    """One Python-backward parent less holds node c's facade (it was freed)."""
    cdef unsigned int bits = nodes[c].flags >> 4
    cdef mgf_held_slot* s
    if bits == 0:
        return
    if bits != HELD_MAX:
        nodes[c].flags -= HELD_ONE
        return
    if mgf_held_broken:
        return
    s = mgf_held_find(nodes[c].seq)
    if s == NULL:
        nodes[c].flags -= HELD_ONE
    elif s.val != MGF_HELD_VOID:
        s.val -= 1
        if s.val == 0:
            mgf_held_del(nodes[c].seq)


cdef void _held_void(Py_ssize_t c) noexcept:
    """Node c's count is not known any more (its facade was re-bound, see above)."""
    global mgf_held_broken
    if nodes[c].flags >> 4:
        nodes[c].flags |= HELD_MAX << 4
        if not mgf_held_set(nodes[c].seq, MGF_HELD_VOID):
            mgf_held_broken = True


cdef inline void _held_forget(mgf_node* n) noexcept:
    """Node n is freed: its table entry, if any, goes with it."""
    if (n.flags >> 4) == HELD_MAX:
        mgf_held_del(n.seq)


cdef inline bint _sole_owner(Py_ssize_t i) noexcept:
    """Whether node i is kept alive by its facade alone (its parents that count, see _hold,
    only keep it through that facade): then the facade may report the node's references."""
    cdef Py_ssize_t held = _held_count(i)
    return held >= 0 and nodes[i].nref == 1 + held


# ---- GC support: Values are GC-capable but untracked until they can be part of a cycle -------
#
# A plain Value refers to no Python object, so the cyclic GC never needs to see it: creating one
# costs no GC bookkeeping. Two things can make a cycle -- an instance __dict__ (p.parent = p) and
# a Python backward callable (the lecture's closures capture `out`) -- and both track the Value.
# The callable is owned by the node, not the facade; the facade reports it to the GC only while
# it is the node's sole owner (nref == 1), i.e. while no other node could still need it.

cdef int _value_traverse(PyObject* o, visitproc visit, void* arg) noexcept:
    cdef PyObject* d = (<Value>o)._dict
    cdef Py_ssize_t i = (<Value>o)._i
    cdef int e
    if d != NULL:
        e = visit(d, arg)
        if e:
            return e
    if i and _sole_owner(i):  # the node's references are this facade's alone
        if nodes[i].op == OP_PY:
            if _py_fn(i) != NULL:
                e = visit(_py_fn(i), arg)
                if e:
                    return e
            if _py_held(i) != NULL:
                e = visit(_py_held(i), arg)
                if e:
                    return e
        if nodes[i].flags & FLAG_KEEP:
            return visit(o, arg)
    return 0


cdef int _value_clear(PyObject* o) noexcept:
    cdef PyObject* d = (<Value>o)._dict
    cdef Py_ssize_t i = (<Value>o)._i
    cdef PyObject* fn
    global pinned
    (<Value>o)._dict = NULL
    pinned += 1  # (the dict's contents may run any code when they go: i must stay put)
    Py_XDECREF(d)
    pinned -= 1
    if i and _sole_owner(i):
        # the callable is what closes the cycles; the held Values stay until the node goes
        if nodes[i].op == OP_PY and nodes[i].b:
            fn = _pyx[nodes[i].b].fn
            _pyx[nodes[i].b].fn = NULL
            Py_XDECREF(fn)
        _unkeep(<Value>o)  # the GC holds a reference of its own meanwhile
    return 0


cdef object _s_data = "data"  # interned, as the attribute names in compiled code are
cdef object _s_grad = "grad"


cdef int _value_setattro(PyObject* o, PyObject* name, PyObject* value) noexcept:
    # `p.data -= lr * p.grad`, `p.grad = 0.0`: a float into a plain Value's node without the
    # descriptor machinery (a subclass may override the properties: it takes the generic path)
    cdef Py_ssize_t i = (<Value>o)._i
    if (value != NULL and PyFloat_CheckExact(<object>value) and i
            and <_TypeSlots*>Py_TYPE(o) == _value_type):
        if name == <PyObject*>_s_data:
            nodes[i].data = PyFloat_AS_DOUBLE(<object>value)
            return 0
        if name == <PyObject*>_s_grad:
            nodes[i].grad = PyFloat_AS_DOUBLE(<object>value)
            return 0
    cdef int r = PyObject_GenericSetAttr(o, name, value)
    if r == 0 and (<Value>o)._dict != NULL:
        _keep(<Value>o)  # tracks it too
        if not PyObject_GC_IsTracked(o):
            PyObject_GC_Track(o)
    return r


cdef void _value_dealloc(PyObject* o) noexcept:
    """Value's deallocator: drop the node reference; recycle the object on the freelist.

    The common case -- a facade whose node lives on in its parent -- runs no Python code and so
    needs no saving of a pending exception; anything that may run Python code (an instance
    dict, freeing nodes that own callables) saves and restores it around."""
    global _n_free, pinned
    cdef Py_ssize_t i = (<Value>o)._i
    cdef PyObject* d = (<Value>o)._dict
    cdef PyObject** anchor = <PyObject**>(<char*>o + _anchor_offset)
    cdef PyObject* etype
    cdef PyObject* evalue
    cdef PyObject* etb
    if mgf_gc_is_tracked(o):
        PyObject_GC_UnTrack(o)
    if i and facades[i] == o:
        # detached first: code that runs below (weak reference callbacks, the contents of its
        # dict dying) and asks the node for its Value gets a new one, never this dying object
        facades[i] = NULL
    if (<PyObject**>(<char*>o + _value_type.tp_weaklistoffset))[0] != NULL:
        pinned += 1  # (and cannot move the node: i stays its index)
        PyObject_ClearWeakRefs(o)
        pinned -= 1
    (<Value>o)._i = 0
    if d == NULL and anchor[0] == NULL and i and _release_quiet(i):
        pass  # no Python code ran
    else:
        PyErr_Fetch(&etype, &evalue, &etb)
        (<Value>o)._dict = NULL
        pinned += 1
        Py_XDECREF(d)
        Py_XDECREF(anchor[0])
        anchor[0] = NULL
        pinned -= 1
        if i:
            _release_noexcept(i)
        PyErr_Restore(etype, evalue, etb)
    if <_TypeSlots*>Py_TYPE(o) == _value_type and _n_free < FREELIST_SIZE:
        _free_facades[_n_free] = o
        _n_free += 1
    else:
        (<_TypeSlots*>Py_TYPE(o)).tp_free(o)


cdef extern from *:
    """
    #ifndef PY_VECTORCALL_ARGUMENTS_OFFSET
    #define PY_VECTORCALL_ARGUMENTS_OFFSET ((size_t)1 << (8 * sizeof(size_t) - 1))
    #endif
    /* what CPython's type_call does: tp_new, then tp_init when the result is an instance */
    static PyObject* mgf_type_call(PyObject* cls, PyObject* const* args, Py_ssize_t n,
                                   PyObject* kwnames) {
        PyTypeObject* t = (PyTypeObject*)cls;
        Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0, k;
        PyObject *pos, *kw = NULL, *obj = NULL;
        pos = PyTuple_New(n);
        if (pos == NULL) return NULL;
        for (k = 0; k < n; k++) { Py_INCREF(args[k]); PyTuple_SET_ITEM(pos, k, args[k]); }
        if (nk) {
            kw = PyDict_New();
            if (kw == NULL) goto done;
            for (k = 0; k < nk; k++)
                if (PyDict_SetItem(kw, PyTuple_GET_ITEM(kwnames, k), args[n + k]) < 0) goto done;
        }
        obj = t->tp_new(t, pos, kw);
        if (obj != NULL && PyObject_TypeCheck(obj, t) && Py_TYPE(obj)->tp_init != NULL
                && Py_TYPE(obj)->tp_init(obj, pos, kw) < 0) {
            Py_CLEAR(obj);
        }
    done:
        Py_DECREF(pos);
        Py_XDECREF(kw);
        return obj;
    }
    """
    size_t PY_VECTORCALL_ARGUMENTS_OFFSET
    object mgf_type_call(object cls, PyObject** args, Py_ssize_t n, PyObject* kwnames)


cdef object _value_vectorcall(object cls, PyObject** args, size_t nargsf, PyObject* kwnames):
    """`Value(...)`: CPython calls this instead of tp_new + __init__ (the type's tp_vectorcall).

    Value(x) for a number -- the leaves of every training step -- is a facade from the freelist
    and a leaf node, with no argument parsing; anything else (keywords, children, a subclass,
    which does not inherit tp_vectorcall anyway) takes the ordinary path: __new__, then
    __init__, with the same arguments."""
    cdef Py_ssize_t n = <Py_ssize_t>(nargsf & ~PY_VECTORCALL_ARGUMENTS_OFFSET)
    cdef double x
    cdef Value out
    if (n == 1 and kwnames == NULL and <PyObject*>cls == <PyObject*>_value_type
            and _value_type.tp_init == _own_init):  # (not when a script gave it an __init__)
        if not _as_double(<object>args[0], &x):
            _real(<object>args[0], "data")  # raises the constructor's TypeError
        out = _fresh()
        _reserve_slots(1)
        return _own(out, _new_node(OP_LEAF, x, 0, 0))
    return mgf_type_call(cls, args, n, kwnames)


cdef void* _own_init = NULL  # Value's tp_init, as compiled


cdef void _patch_value_type() except *:
    # extra attributes go into a lazily made instance dict (generic getattr/setattr find it
    # through tp_dictoffset): a declared `__dict__` field would cost a dict per Value
    global _value_type, _anchor_offset, _own_init
    cdef Value probe = Value.__new__(Value)
    cdef _TypeSlots* t = <_TypeSlots*><PyObject*>Value
    _value_type = t
    _anchor_offset = MGF_ANCHOR_OFFSET
    if (<PyObject**>(<char*><PyObject*>probe + _anchor_offset))[0] != <PyObject*>None:
        raise ImportError("micrograd_fast: unexpected Value layout")
    t.tp_dictoffset = <char*>&probe._dict - <char*><PyObject*>probe
    t.tp_dealloc = _value_dealloc
    t.tp_traverse = _value_traverse
    t.tp_clear = _value_clear
    t.tp_setattro = _value_setattro
    t.tp_vectorcall = <void*>_value_vectorcall
    _own_init = t.tp_init
    # a script may add methods to the class (Value.cube = cube), as to micrograd's: CPython
    # 3.10+ lets it once the class is not marked immutable (3.9 refuses any extension type).
    # (Value's __class__ setter still refuses to turn a Value into another class.)
    t.tp_flags &= ~MGF_IMMUTABLETYPE
    PyType_Modified(t)
