# cython: language_level=3, embedsignature=True
"""The compiled engine: micrograd's Value over a flat C node arena.

A Value is a thin facade holding the index of its node; the numbers, the graph and the gradients
live in the arena (_arena.pxi), and backward() is one C loop over it (_sweep.pxi). Behaviour,
numbers and exceptions are those of micrograd_fast/reference.py, which is the spec.
"""
cimport cython
from cpython.exc cimport PyErr_WriteUnraisable
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check, PyFloat_CheckExact
from cpython.long cimport PyLong_AsDouble, PyLong_Check, PyLong_CheckExact
from cpython.mem cimport (PyMem_Free, PyMem_Malloc, PyMem_RawCalloc, PyMem_RawFree, PyMem_RawMalloc,
                          PyMem_RawRealloc)
from cpython.object cimport PyObject
from cpython.dict cimport PyDict_GetItemWithError
from cpython.sequence cimport PySequence_Fast_ITEMS
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from libc.math cimport NAN, log, tanh
from libc.stdint cimport int32_t, uint32_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memset

from micrograd_fast._fmath cimport (F_DOMAIN, F_RANGE, F_ZERO_DIV, py_exp, py_log, py_pow,
                                    py_sigmoid)

include "_arena.pxi"
include "_sweep.pxi"

cdef extern from "Python.h":
    ctypedef int (*visitproc)(PyObject*, void*) noexcept
    ctypedef int (*traverseproc)(PyObject*, visitproc, void*) noexcept
    ctypedef int (*inquiry)(PyObject*) noexcept
    ctypedef int (*setattrofunc)(PyObject*, PyObject*, PyObject*) noexcept
    ctypedef void (*destructor)(PyObject*) noexcept
    ctypedef void (*freefunc)(void*) noexcept
    ctypedef struct _TypeSlots "PyTypeObject":  # the slots patched at import, see the end
        destructor tp_dealloc
        freefunc tp_free
        traverseproc tp_traverse
        inquiry tp_clear
        setattrofunc tp_setattro
        Py_ssize_t tp_dictoffset
        Py_ssize_t tp_weaklistoffset
    PyObject* PyObject_Init(PyObject*, _TypeSlots*)
    void PyObject_ClearWeakRefs(PyObject*)
    void PyErr_Fetch(PyObject**, PyObject**, PyObject**)
    void PyErr_Restore(PyObject*, PyObject*, PyObject*)
    PyObject* Py_TYPE(PyObject*)
    void PyType_Modified(_TypeSlots*)
    void PyObject_GC_Track(void*)
    void PyObject_GC_UnTrack(void*)
    int PyObject_GC_IsTracked(PyObject*) noexcept
    int PyObject_GenericSetAttr(PyObject*, PyObject*, PyObject*) noexcept
    bint PyIndex_Check(object)
    PyObject* PyDict_New() except NULL


cdef extern from "Python.h":
    object PyObject_GenericGetDict(object o, void* context)


cdef extern from *:
    """
    static CYTHON_INLINE PyObject* mgf_take(PyObject* o) { return o; }
    /* A Value from the freelist back to life. Its type is still Value (only exact Values are
       recycled, and a static type needs no reference), so what PyObject_Init would do comes
       down to the reference count -- except where CPython does more (free-threaded builds,
       reference-tracing debug builds, tracemalloc's bookkeeping of reused objects). */
    static CYTHON_INLINE void mgf_revive(PyObject* o, PyTypeObject* t) {
    #if defined(Py_GIL_DISABLED) || defined(Py_TRACE_REFS) || defined(Py_REF_DEBUG)
        PyObject_Init(o, t);
    #else
        (void)t;
        Py_SET_REFCNT(o, 1);
    #endif
    }
    /* expands where used, after Cython has defined the Value struct */
    #define MGF_ANCHOR_OFFSET offsetof(struct __pyx_obj_14micrograd_fast_7_engine_Value, _gc_anchor)
    """
    Value mgf_take(PyObject* o)  # hands our reference over to Cython (no extra incref)
    void mgf_revive(PyObject* o, void* t)
    Py_ssize_t MGF_ANCHOR_OFFSET


# ---- numbers ---------------------------------------------------------------------------------

cdef int _as_double_slow(object o, double* out) except -1:
    if isinstance(o, (str, bytes, bytearray)):
        return 0
    try:
        out[0] = float(o)
    except TypeError:
        return 0
    return 1


cdef inline int _as_double(object o, double* out) except -1:
    """1 and out = float(o) for a real number; 0 for anything else (operators: NotImplemented)."""
    if PyFloat_CheckExact(o):
        out[0] = PyFloat_AS_DOUBLE(o)
        return 1
    if PyLong_CheckExact(o):
        out[0] = PyLong_AsDouble(o)  # OverflowError for huge ints, as float + int
        return 1
    return _as_double_slow(o, out)


cdef double _real(object o, str what) except? -1.0:
    cdef double x
    if not _as_double(o, &x):
        raise TypeError(f"Value {what} must be a real number, not {type(o).__name__!r}")
    return x


cdef int _math_error(int err, str msg) except -1:
    if err == F_ZERO_DIV:
        raise ZeroDivisionError("0.0 cannot be raised to a negative power")
    if err == F_DOMAIN:
        raise ValueError(msg)
    raise OverflowError(34, "Numerical result out of range") if msg is None else OverflowError(msg)


cdef double _power(double x, double k) except? -1.0:
    cdef double r = 0.0
    cdef int err = py_pow(x, k, &r)
    if err:
        # as float's **: ValueError for a complex result, OverflowError(34, ...) for a range
        _math_error(err, "negative number cannot be raised to a fractional power"
                    if err == F_DOMAIN else None)
    return r


# ---- facades ---------------------------------------------------------------------------------

cdef int _uninitialised() except -1:
    raise AttributeError("this Value has no node: Value.__init__ was not called")


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
    if i and not (nodes[i].flags & FLAG_KEEP):
        Py_INCREF(v)
        nodes[i].flags |= FLAG_KEEP
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


cdef object _binary(Value self, object other, unsigned int op):
    """self + other or self * other: one node, one facade (plus a leaf for a number)."""
    cdef Py_ssize_t a, b
    cdef double c = 0.0
    cdef bint number = not isinstance(other, Value)
    if number and not _as_double(other, &c):  # may run Python code: before reading indices
        return NotImplemented
    cdef Value out = _fresh()
    _reserve_slots(2)
    a = _index(self)
    b = _new_node(OP_LEAF, c, 0, 0) if number else _index(<Value>other)
    if op == OP_ADD:
        return _own(out, _new_node(OP_ADD, nodes[a].data + nodes[b].data, a, b))
    return _own(out, _new_node(OP_MUL, nodes[a].data * nodes[b].data, a, b))


cdef Py_ssize_t _times_minus_one(Py_ssize_t a) except -1:
    """The facade-less node a * -1 (micrograd's -a)."""
    cdef Py_ssize_t c = _new_node(OP_LEAF, -1.0, 0, 0)
    return _new_node(OP_MUL, nodes[a].data * -1.0, a, c)


cdef Py_ssize_t _inverse(Py_ssize_t a) except -1:
    """The facade-less node a ** -1 (micrograd's division)."""
    cdef Py_ssize_t i = _new_node(OP_POWK, _power(nodes[a].data, -1.0), a, 0)
    nodes[i].u.k = -1.0
    nodes[i].flags = FLAG_INT_K
    return i


cdef Py_ssize_t _unary(Value self, unsigned int op) except -1:
    _reserve_slots(1)
    cdef Py_ssize_t a = _index(self)
    cdef double x = nodes[a].data, y = 0.0
    cdef int err = 0
    if op == OP_RELU:
        y = 0.0 if x < 0 else x
    elif op == OP_TANH:
        y = tanh(x)
    elif op == OP_EXP:
        err = py_exp(x, &y)
    elif op == OP_LOG:
        err = py_log(x, &y)
    else:
        y = py_sigmoid(x)
    if err:
        _math_error(err, "math range error" if op == OP_EXP else "math domain error")
    return _new_node(op, y, a, 0)


cdef Py_ssize_t _fused(unsigned int op, double data, list children) except -1:
    """An n-ary node over the given child indices."""
    cdef Py_ssize_t n = len(children), k, c
    cdef Py_ssize_t i = _new_ext_node(op, data, n)
    cdef mgf_ext* ext = nodes[i].u.ext
    for k in range(n):
        c = children[k]
        ext.child[k] = <int32_t>c
        nodes[c].nref += 1
    return i


cdef str _opname(Py_ssize_t i):
    cdef unsigned int op = nodes[i].op
    if nodes[i].flags & FLAG_OPNAME:
        return _opnames[nodes[i].seq]
    if op == OP_ADD:
        return '+'
    if op == OP_MUL:
        return '*'
    if op == OP_POWK:
        if nodes[i].flags & FLAG_INT_K:
            return f"**{int(nodes[i].u.k)}"
        return f"**{nodes[i].u.k!r}"
    return ('', '+', '*', '', 'ReLU', 'tanh', 'exp', 'log', 'sigmoid', '**', 'dot', 'sum', '')[op]


cdef int _make_python_op(Py_ssize_t i) except -1:
    """Turn node i into an OP_PY node (its backward becomes a Python callable), keeping its
    children, its name and its numbers."""
    cdef unsigned int op = nodes[i].op
    cdef tuple held
    cdef str name
    cdef mgf_ext* ext
    cdef Py_ssize_t n
    if op == OP_PY:
        return 0
    name = _opname(i)
    if not (nodes[i].flags & FLAG_OPNAME) and name:
        _opnames[nodes[i].seq] = name
        nodes[i].flags |= FLAG_OPNAME
    held = _child_values(i)
    if _is_ext(op):
        nodes[i].op = OP_PY
        _hold(i, held)
        return 0
    n = (nodes[i].a != 0) + (nodes[i].b != 0)
    ext = _alloc_ext(n)
    ext.child[0] = nodes[i].a  # the edges (and their nref) move into the block
    if n == 2:
        ext.child[1] = nodes[i].b
    nodes[i].u.ext = ext
    nodes[i].a = <int32_t>n
    nodes[i].b = 0
    nodes[i].op = OP_PY
    _hold(i, held)
    return 0


cdef tuple _child_values(Py_ssize_t i):
    """Node i's children as Values, in order (made where their facades are gone)."""
    global pinned
    cdef list out = []
    cdef Py_ssize_t k
    pinned += 1  # making facades may run Python code (a GC pass): keep indices still
    try:
        if _is_ext(nodes[i].op):
            for k in range(nodes[i].a):
                out.append(_facade(nodes[i].u.ext.child[k]))
        else:
            if nodes[i].a:
                out.append(_facade(nodes[i].a))
            if nodes[i].b:
                out.append(_facade(nodes[i].b))
    finally:
        pinned -= 1
    return tuple(out)


cdef void _hold(Py_ssize_t i, tuple values) noexcept:
    """Let the Python-backward node i hold its children's Values, as micrograd's _prev does.

    A user's backward callable usually refers to them (the lecture's closures do) and often to
    the node's own Value, making reference cycles the GC must be able to see whole. A Value may
    report what its node holds only while nothing but itself keeps the node alive; holding the
    children's Values makes a parent that is a Python-backward node such a keeper only while it
    keeps the Value alive too, so it need not count (HELD_* in the flags; _sole_owner). Then a
    chain of hand-built nodes is garbage for the GC all at once, not one level per collection.
    """
    cdef mgf_ext* ext = nodes[i].u.ext
    cdef Py_ssize_t k, c
    if ext.held != NULL:
        return
    Py_INCREF(values)
    ext.held = <PyObject*>values
    for k in range(nodes[i].a):
        c = ext.child[k]
        if (nodes[c].flags >> 4) != HELD_MAX:
            nodes[c].flags += HELD_ONE


cdef inline bint _sole_owner(Py_ssize_t i) noexcept:
    """Whether node i is kept alive by its facade alone (its parents that count, see _hold,
    only keep it through that facade): then the facade may report the node's references."""
    cdef unsigned int held = nodes[i].flags >> 4
    return held != HELD_MAX and nodes[i].nref == 1 + held


# ---- Value -----------------------------------------------------------------------------------

cdef class Value:
    """A scalar that remembers how it was made, so that backward() can find its gradient.

    Value(data, _children=(), _op='', label='') as in micrograd and its lecture. The number and
    its graph live in the compiled node arena; this object holds only its node's index.
    """
    cdef Py_ssize_t _i          # arena slot of this Value's node (0: none, __init__ not run)
    cdef PyObject* _dict        # instance __dict__, made by the first extra attribute (p.m = 0.0)
    cdef object __weakref__
    cdef object _gc_anchor      # unused; an object field makes the type GC-capable (see _track)

    def __init__(self, data, _children=(), _op='', label=''):
        cdef double x = _real(data, "data")
        cdef list values
        cdef list children = []
        cdef Py_ssize_t i, old
        cdef tuple held
        if (type(_children) is tuple and not _children and self._i == 0 and type(self) is Value
                and type(_op) is str and not _op and type(label) is str and not label):
            # the common case, Value(x): a leaf and nothing else
            _drop_anchor(self)
            PyObject_GC_UnTrack(<PyObject*>self)
            _reserve_slots(1)
            _own(self, _new_node(OP_LEAF, x, 0, 0))
            return
        values = list(_children)
        held = tuple(values)  # made before any node: it may run a GC pass
        for child in values:
            if not isinstance(child, Value):
                raise TypeError(f"Value children must be Values, not {type(child).__name__!r}")
        old = self._i
        if old == 0:
            _drop_anchor(self)
            PyObject_GC_UnTrack(<PyObject*>self)
        _reserve_slots(1)
        for child in values:
            children.append(_index(<Value>child))
        if children:  # hand-built node (lecture style): its backward is whatever is assigned
            i = _fused(OP_PY, x, children)
            _hold(i, held)
        else:
            i = _new_node(OP_LEAF, x, 0, 0)
        if not (type(_op) is str and not _op):
            _opnames[nodes[i].seq] = _op
            nodes[i].flags |= FLAG_OPNAME
        if not (type(label) is str and not label):
            _labels[nodes[i].seq] = label
            nodes[i].flags |= FLAG_LABEL
        old = self._i
        if old:  # __init__ called again: rebind
            _unkeep(self)
            self._i = 0
            facades[old] = NULL
            _own(self, i)
            _release(old)
        else:
            _own(self, i)
        if type(self) is not Value or self._dict != NULL:
            _keep(self)

    # ---- the numbers ----
    @property
    def data(self):
        return nodes[_index(self)].data

    @data.setter
    def data(self, value):
        nodes[_index(self)].data = _real(value, "data")

    @property
    def grad(self):
        return nodes[_index(self)].grad

    @grad.setter
    def grad(self, value):
        nodes[_index(self)].grad = _real(value, "grad")

    @property
    def label(self):
        cdef Py_ssize_t i = _index(self)
        return _labels[nodes[i].seq] if nodes[i].flags & FLAG_LABEL else ''

    @label.setter
    def label(self, value):
        cdef Py_ssize_t i = _index(self)
        _labels[nodes[i].seq] = value
        nodes[i].flags |= FLAG_LABEL

    # ---- the graph ----
    @property
    def _op(self):
        return _opname(_index(self))

    @_op.setter
    def _op(self, value):
        cdef Py_ssize_t i = _index(self)
        _opnames[nodes[i].seq] = value
        nodes[i].flags |= FLAG_OPNAME

    @property
    def _prev(self):
        """The children, as a set of Values (made on demand for nodes whose facade is gone)."""
        return set(_child_values(_index(self)))

    @property
    def _backward(self):
        """This node's local backward: adds its contribution to its children's grads."""
        cdef Py_ssize_t i = _index(self)
        if nodes[i].op == OP_PY and nodes[i].u.ext.fn != NULL:
            return <object>nodes[i].u.ext.fn
        return self._local_backward

    @_backward.setter
    def _backward(self, fn):
        cdef Py_ssize_t i = _index(self)
        cdef PyObject* old
        if not callable(fn):
            raise TypeError(f"_backward must be callable, not {type(fn).__name__!r}")
        _make_python_op(i)
        old = nodes[i].u.ext.fn
        Py_INCREF(fn)
        nodes[i].u.ext.fn = <PyObject*>fn
        _track(self)  # fn may refer back to this Value (the lecture's closures do)
        Py_XDECREF(old)

    def _local_backward(self):
        _backprop_node(_index(self))

    @property
    def __dict__(self):
        if self._dict == NULL:
            self._dict = PyDict_New()
            _track(self)
            _keep(self)
        return <object>self._dict

    # ---- the operators micrograd has ----
    def __add__(self, other):
        return _binary(self, other, OP_ADD)

    def __radd__(self, other):  # other + self
        if type(self) is not Value:  # a subclass may override + (see _derived)
            return self + other
        return _binary(self, other, OP_ADD)

    def __mul__(self, other):
        return _binary(self, other, OP_MUL)

    def __rmul__(self, other):  # other * self
        if type(self) is not Value:
            return self * other
        return _binary(self, other, OP_MUL)

    def __pow__(self, other, mod):
        cdef Py_ssize_t a, i
        cdef double k
        cdef Value out
        if mod is not None:
            return NotImplemented
        if isinstance(other, Value):  # beyond micrograd: a Value exponent
            out = _fresh()
            _reserve_slots(1)
            a = _index(self)
            i = _index(<Value>other)
            return _own(out, _new_node(OP_POW, _power(nodes[a].data, nodes[i].data), a, i))
        if not _as_double(other, &k):
            return NotImplemented
        out = _fresh()
        _reserve_slots(1)
        a = _index(self)
        i = _new_node(OP_POWK, _power(nodes[a].data, k), a, 0)
        nodes[i].u.k = k
        if PyLong_Check(other) or (not PyFloat_Check(other) and PyIndex_Check(other)):
            nodes[i].flags = FLAG_INT_K
        return _own(out, i)

    def __rpow__(self, other, mod):  # other ** self
        cdef Py_ssize_t a, c
        cdef double x, y
        if mod is not None or not _as_double(other, &x):
            return NotImplemented
        out = _fresh()
        _reserve_slots(2)
        a = _index(self)
        y = _power(x, nodes[a].data)  # may raise: before any node is made, so none is orphaned
        c = _new_node(OP_LEAF, x, 0, 0)
        return _own(out, _new_node(OP_POW, y, c, a))

    def relu(self):
        out = _fresh()
        return _own(out, _unary(self, OP_RELU))

    def tanh(self):
        out = _fresh()
        return _own(out, _unary(self, OP_TANH))

    def exp(self):
        out = _fresh()
        return _own(out, _unary(self, OP_EXP))

    def log(self):
        out = _fresh()
        return _own(out, _unary(self, OP_LOG))

    def sigmoid(self):
        out = _fresh()
        return _own(out, _unary(self, OP_SIGMOID))

    # ---- derived operators: micrograd's graph shapes, extra nodes without facades ----
    #
    # micrograd writes these in terms of + and *, so a subclass that overrides __add__ or
    # __mul__ sees them too: for subclass instances they go through the Python operators (the
    # same nodes and numbers, only slower); for Value itself, straight to the arena.

    def __neg__(self):  # -self = self * -1
        if type(self) is not Value:
            return self * -1
        out = _fresh()
        _reserve_slots(2)
        return _own(out, _times_minus_one(_index(self)))

    def __sub__(self, other):  # self - other = self + (-other)
        cdef Py_ssize_t a, b
        cdef double x = 0.0
        cdef bint number = not isinstance(other, Value)
        if type(self) is not Value:
            if number and not _as_double(other, &x):
                return NotImplemented
            return self + (-other)
        if number:
            if PyFloat_CheckExact(other):
                x = -PyFloat_AS_DOUBLE(other)
            elif PyLong_CheckExact(other):
                x = -PyLong_AsDouble(other) if other else 0.0  # -0 is the int 0, not -0.0
            elif not _as_double(other, &x):
                return NotImplemented
            else:
                _as_double(-other, &x)  # negate as the number's own type does
        cdef Value out = _fresh()
        _reserve_slots(3)
        a = _index(self)
        b = _new_node(OP_LEAF, x, 0, 0) if number else _times_minus_one(_index(<Value>other))
        return _own(out, _new_node(OP_ADD, nodes[a].data + nodes[b].data, a, b))

    def __rsub__(self, other):  # other - self = (-self) + other
        cdef Py_ssize_t n, c
        cdef double x
        if not _as_double(other, &x):
            return NotImplemented
        if type(self) is not Value:
            return other + (-self)
        out = _fresh()
        _reserve_slots(3)
        n = _times_minus_one(_index(self))
        c = _new_node(OP_LEAF, x, 0, 0)
        return _own(out, _new_node(OP_ADD, nodes[n].data + x, n, c))

    def __truediv__(self, other):  # self / other = self * other**-1
        cdef Py_ssize_t a, b
        cdef double x = 0.0
        cdef bint number = not isinstance(other, Value)
        if number:
            if not _as_double(other, &x):
                return NotImplemented
            x = _power(x, -1.0)  # other**-1 on the plain number
        if type(self) is not Value:
            return self * (x if number else other**-1)
        cdef Value out = _fresh()
        _reserve_slots(2)
        a = _index(self)
        b = _new_node(OP_LEAF, x, 0, 0) if number else _inverse(_index(<Value>other))
        return _own(out, _new_node(OP_MUL, nodes[a].data * nodes[b].data, a, b))

    def __rtruediv__(self, other):  # other / self = self**-1 * other
        cdef Py_ssize_t p, c
        cdef double x
        if not _as_double(other, &x):
            return NotImplemented
        if type(self) is not Value:
            return other * self**-1
        out = _fresh()
        _reserve_slots(3)
        p = _inverse(_index(self))
        c = _new_node(OP_LEAF, x, 0, 0)
        return _own(out, _new_node(OP_MUL, nodes[p].data * x, p, c))

    def backward(self):
        """Back-propagate from this Value: its grad becomes 1, every node it depends on
        accumulates (+=) its gradient, in one C loop."""
        _backward_from(_index(self))

    def __repr__(self):
        cdef Py_ssize_t i = _index(self)
        return f"Value(data={nodes[i].data!r}, grad={nodes[i].grad!r})"

    def __reduce__(self):
        # copy/pickle a Value as a leaf with the same numbers, label and extra attributes
        state = dict(<object>self._dict) if self._dict != NULL else None
        return _rebuild, (type(self), self.data, self.grad, self.label, state)


def _rebuild(cls, data, grad, label, state):
    cdef Value v = cls.__new__(cls)
    Value.__init__(v, data, label=label)
    v.grad = grad
    if state:
        for key, value in state.items():
            setattr(v, key, value)
    return v


# ---- fused helpers: one node, the numbers of the unfused expression ----------------------------

cdef object _as_item(object o, str who):
    """A Value stays a Value; a number becomes a float (its leaf is made later); else TypeError."""
    cdef double x
    if isinstance(o, Value):
        return o
    if not _as_double(o, &x):
        raise TypeError(f"{who}() takes Values or real numbers, not {type(o).__name__!r}")
    return x


cdef Py_ssize_t _item_index(object o) except -1:
    """Node of an item from _as_item: the Value's node, or a new leaf for a number."""
    if isinstance(o, Value):
        return _index(<Value>o)
    return _new_node(OP_LEAF, <double>o, 0, 0)


def dot(ws, xs, bias):
    """bias + w0*x0 + w1*x1 + ... as ONE node ('dot'), summed left to right from bias.

    Exactly the numbers of micrograd's Neuron, ``sum((wi*xi for wi, xi in zip(w, x)), b)``,
    with one node instead of 2n. Pairs stop at the shorter of ws and xs, as zip does.
    """
    return _dot(ws, xs, bias)


def layer(neurons, x, neuron_type):
    """``[n(x) for n in neurons]``, with each neuron whose type is exactly neuron_type (nn.Neuron)
    computed here as Neuron.__call__ does -- ``dot(n.w, x, n.b)``, then ``.relu()`` if n.nonlin --
    so the nodes, their numbers and their creation order are the same, without a Python call per
    neuron. Any other neuron (a subclass, say) is called."""
    cdef list out = []
    cdef object act, d
    cdef PyObject* w
    cdef PyObject* b
    cdef PyObject* nonlin
    for n in neurons:
        if type(n) is not neuron_type:
            out.append(n(x))
            continue
        # the fields straight from the instance dict (a plain Neuron has no descriptors for
        # them); where one is missing, getattr gives the error a Python access would
        d = PyObject_GenericGetDict(n, NULL)
        w = PyDict_GetItemWithError(d, "w")
        b = PyDict_GetItemWithError(d, "b")
        nonlin = PyDict_GetItemWithError(d, "nonlin")
        act = _dot(<object>w if w != NULL else n.w, x, <object>b if b != NULL else n.b)
        if (<object>nonlin if nonlin != NULL else n.nonlin):
            act = _own(_fresh(), _unary(<Value>act, OP_RELU))
        out.append(act)
    return out


cdef object _dot(object ws, object xs, object bias):
    cdef object wseq = ws if type(ws) is list or type(ws) is tuple else list(ws)
    cdef object xseq = xs if type(xs) is list or type(xs) is tuple else list(xs)
    cdef Py_ssize_t n, k, j, i, w, x, b
    cdef PyObject** wv
    cdef PyObject** xv
    cdef mgf_ext* ext
    cdef double acc
    cdef Value out
    cdef bint values = True
    if not isinstance(bias, Value) or (<Value>bias)._i == 0:
        return _dot_general(wseq, xseq, min(len(wseq), len(xseq)), bias)
    # the neuron's case, all Values: one pass checks each pair, writes the child block and sums
    out = _fresh()  # may run Python code (a GC pass): before the items and indices are read
    _reserve_slots(1)
    n = min(len(wseq), len(xseq))
    wv = PySequence_Fast_ITEMS(wseq)
    xv = PySequence_Fast_ITEMS(xseq)
    ext = _alloc_ext(2 * n + 1)
    b = (<Value>bias)._i
    ext.child[0] = <int32_t>b
    acc = nodes[b].data
    for k in range(n):
        if not (isinstance(<object>wv[k], Value) and isinstance(<object>xv[k], Value)):
            values = False
            break
        w = (<Value>wv[k])._i
        x = (<Value>xv[k])._i
        if w == 0 or x == 0:
            break
        ext.child[1 + k] = <int32_t>w
        ext.child[1 + n + k] = <int32_t>x
        nodes[w].nref += 1
        nodes[x].nref += 1
        acc = acc + nodes[w].data * nodes[x].data
    else:
        nodes[b].nref += 1
        return _own(out, _ext_node(OP_DOT, acc, ext, 2 * n + 1))
    # not all Values (numbers among them), or one without a node: undo the pairs done
    for j in range(k):
        nodes[ext.child[1 + j]].nref -= 1
        nodes[ext.child[1 + n + j]].nref -= 1
    PyMem_Free(ext)
    if values:
        _uninitialised()
    return _dot_general(wseq, xseq, n, bias)


cdef object _dot_general(object wseq, object xseq, Py_ssize_t n, object bias):
    """dot() with numbers among the operands: each number becomes a leaf, made in the
    reference's order (w0, x0, w1, x1, ..., bias)."""
    cdef list items = []  # converted before any index is read
    cdef list wpart = [], xpart = []
    cdef Py_ssize_t ib, k
    cdef double acc
    for k in range(n):
        items.append(_as_item(wseq[k], "dot"))
        items.append(_as_item(xseq[k], "dot"))
    items.append(_as_item(bias, "dot"))
    out = _fresh()
    _reserve_slots(len(items) + 1)
    for k in range(n):
        wpart.append(_item_index(items[2 * k]))
        xpart.append(_item_index(items[2 * k + 1]))
    ib = _item_index(items[2 * n])
    acc = nodes[ib].data
    for k in range(n):
        acc = acc + nodes[<Py_ssize_t>wpart[k]].data * nodes[<Py_ssize_t>xpart[k]].data
    return _own(out, _fused(OP_DOT, acc, [ib] + wpart + xpart))


def sum_values(values, start=0):
    """start + v0 + v1 + ... as ONE node ('sum'): the numbers of the builtin sum(values, start)."""
    cdef list items = [_as_item(start, "sum_values")]
    cdef list children = []
    cdef double acc
    cdef Py_ssize_t k
    for v in values:
        items.append(_as_item(v, "sum_values"))
    out = _fresh()
    _reserve_slots(len(items) + 1)
    for v in items:
        children.append(_item_index(v))
    acc = nodes[<Py_ssize_t>children[0]].data
    for k in range(1, len(children)):
        acc = acc + nodes[<Py_ssize_t>children[k]].data
    return _own(out, _fused(OP_SUM, acc, children))


# ---- introspection ---------------------------------------------------------------------------

def arena_stats():
    """Statistics of the node arena: live nodes, capacity, high-water mark, memory."""
    node_bytes = sizeof(mgf_node) + sizeof(PyObject*)  # record + facade pointer
    return {
        "live": live,
        "capacity": cap,
        "high_water": top - 1,
        "dead_slots": top - 1 - live,  # reclaimed by the next compaction
        "node_size": sizeof(mgf_node),
        "compactions": compactions,
        "topo_fallbacks": topo_fallbacks,
        "bytes_per_node": node_bytes,
        "bytes": cap * node_bytes,
    }


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
            if nodes[i].u.ext.fn != NULL:
                e = visit(nodes[i].u.ext.fn, arg)
                if e:
                    return e
            if nodes[i].u.ext.held != NULL:
                e = visit(nodes[i].u.ext.held, arg)
                if e:
                    return e
        if nodes[i].flags & FLAG_KEEP:
            return visit(o, arg)
    return 0


cdef int _value_clear(PyObject* o) noexcept:
    cdef PyObject* d = (<Value>o)._dict
    cdef Py_ssize_t i = (<Value>o)._i
    cdef PyObject* fn
    (<Value>o)._dict = NULL
    Py_XDECREF(d)
    if i and _sole_owner(i):
        # the callable is what closes the cycles; the held Values stay until the node goes
        if nodes[i].op == OP_PY:
            fn = nodes[i].u.ext.fn
            nodes[i].u.ext.fn = NULL
            Py_XDECREF(fn)
        _unkeep(<Value>o)  # the GC holds a reference of its own meanwhile
    return 0


cdef int _value_setattro(PyObject* o, PyObject* name, PyObject* value) noexcept:
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
    global _n_free
    cdef Py_ssize_t i = (<Value>o)._i
    cdef PyObject* d = (<Value>o)._dict
    cdef PyObject** anchor = <PyObject**>(<char*>o + _anchor_offset)
    cdef PyObject* etype
    cdef PyObject* evalue
    cdef PyObject* etb
    if PyObject_GC_IsTracked(o):
        PyObject_GC_UnTrack(o)
    if (<PyObject**>(<char*>o + _value_type.tp_weaklistoffset))[0] != NULL:
        PyObject_ClearWeakRefs(o)
    (<Value>o)._i = 0
    if d == NULL and anchor[0] == NULL and i and nodes[i].nref > 1:
        facades[i] = NULL
        nodes[i].nref -= 1
    else:
        PyErr_Fetch(&etype, &evalue, &etb)
        (<Value>o)._dict = NULL
        Py_XDECREF(d)
        Py_XDECREF(anchor[0])
        anchor[0] = NULL
        if i:
            facades[i] = NULL
            _release_noexcept(i)
        PyErr_Restore(etype, evalue, etb)
    if <_TypeSlots*>Py_TYPE(o) == _value_type and _n_free < FREELIST_SIZE:
        _free_facades[_n_free] = o
        _n_free += 1
    else:
        (<_TypeSlots*>Py_TYPE(o)).tp_free(o)


cdef void _patch_value_type() except *:
    # extra attributes go into a lazily made instance dict (generic getattr/setattr find it
    # through tp_dictoffset): a declared `__dict__` field would cost a dict per Value
    global _value_type, _anchor_offset
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
    PyType_Modified(t)


_resize(INITIAL_SLOTS)
_patch_value_type()


# ---- a consistency check of the whole arena, for tests ----------------------------------------

def _check_arena():
    """Raise AssertionError if the arena breaks an invariant (tests call it after each test):
    live nodes have valid ops and child blocks, children sit below their parents, each nref is
    the number of parent edges plus the live facade, and dead slots are cleared."""
    cdef Py_ssize_t i, k, c, m, count = 0
    cdef uint32_t* refs = <uint32_t*>PyMem_RawCalloc(<size_t>cap + 1, sizeof(uint32_t))
    cdef uint32_t* helds = <uint32_t*>PyMem_RawCalloc(<size_t>cap + 1, sizeof(uint32_t))
    cdef int32_t* kids
    if refs == NULL or helds == NULL:
        PyMem_RawFree(refs)
        PyMem_RawFree(helds)
        raise MemoryError()
    try:
        for i in range(1, top):
            if nodes[i].nref == 0:
                if nodes[i].op != OP_LEAF or nodes[i].a or nodes[i].b or facades[i] != NULL:
                    raise AssertionError(f"dead slot {i} not cleared")
                continue
            count += 1
            if nodes[i].op > OP_PY:
                raise AssertionError(f"node {i}: bad op {nodes[i].op}")
            if _is_ext(nodes[i].op):
                if nodes[i].u.ext == NULL:
                    raise AssertionError(f"node {i}: n-ary op without children block")
                kids, m = nodes[i].u.ext.child, nodes[i].a
            else:
                kids, m = NULL, 0
                for c in (nodes[i].a, nodes[i].b):
                    if c:
                        if not 0 < c < i or nodes[c].nref == 0:
                            raise AssertionError(f"node {i}: bad child {c}")
                        refs[c] += 1
            for k in range(m):
                c = kids[k]
                if not 0 < c < i or nodes[c].nref == 0:
                    raise AssertionError(f"node {i}: bad child {c}")
                refs[c] += 1
                if nodes[i].op == OP_PY and nodes[i].u.ext.held != NULL:
                    helds[c] += 1
            if facades[i] != NULL:
                refs[i] += 1
                if (<Value>facades[i])._i != i:
                    raise AssertionError(f"node {i}: its facade points at {(<Value>facades[i])._i}")
        for i in range(1, top):
            if nodes[i].nref and refs[i] != nodes[i].nref:
                raise AssertionError(f"node {i}: nref {nodes[i].nref}, counted {refs[i]}")
            if nodes[i].nref and (nodes[i].flags >> 4) != HELD_MAX and (nodes[i].flags >> 4) != helds[i]:
                raise AssertionError(f"node {i}: held {nodes[i].flags >> 4}, counted {helds[i]}")
        if count != live:
            raise AssertionError(f"live is {live}, counted {count}")
    finally:
        PyMem_RawFree(refs)
        PyMem_RawFree(helds)
    return count
