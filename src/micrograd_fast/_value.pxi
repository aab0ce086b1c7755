# ---- Value and its operators ---------------------------------------------------------------------
#
# Owns: each operator's forward value and the node it records (its backward is in _sweep.pxi,
# _backprop_node, under the same op code). Invariants: an operator converts its operands and
# makes its facade before reserving slots (either may run Python code), reserves every slot it
# needs before reading any index (_reserve_slots may compact), and makes its nodes only once
# nothing can fail any more -- so an exception never leaves an orphan node. Graph shapes are
# micrograd's: the derived operators add facade-less nodes (a - b is a + b*-1).


cdef Py_ssize_t _bound(Value v) except 0:
    """v's node, for an assignment. A Value made without Value.__init__ -- a subclass whose own
    __init__ assigns data, grad, _backward, _prev and _op, as micrograd's __init__ does -- gets
    a leaf (data 0.0) at its first assignment, which the following ones fill in."""
    if v._i == 0:
        Value.__init__(v, 0.0)
    return v._i


cdef Py_ssize_t _child_count(Py_ssize_t i) noexcept:
    if _is_ext(nodes[i].op):
        return nodes[i].a
    return (nodes[i].a != 0) + (nodes[i].b != 0)


cdef object _binary(Value self, object other, unsigned int op):
    """self + other or self * other: one node, one facade (plus a leaf for a number)."""
    cdef Py_ssize_t a, b
    cdef double c = 0.0
    cdef bint number = not isinstance(other, Value)
    if number and not _as_operand(other, &c):  # may run Python code: before reading indices
        return NotImplemented
    cdef Value out = _fresh()
    _reserve_slots(2)
    a = _index(self)
    b = _new_node(OP_LEAF, c, 0, 0) if number else _index(<Value>other)
    if op == OP_ADD:
        return _own(out, _op_node(OP_ADD, nodes[a].data + nodes[b].data, a, b))
    return _own(out, _op_node(OP_MUL, nodes[a].data * nodes[b].data, a, b))


cdef double _negated(object number, double x) except? -1.0:
    """The leaf micrograd's self + (-number) makes: -x (x = float(number)), except that a zero
    gets the sign its own type gives it (-0 is the int 0, -0.0 is -0.0). Not negated in the
    number's own type otherwise: numpy's unsigned ints would wrap around (2 - np.uint8(3) is
    -1.0 here, as for a float; micrograd's 255 is numpy's overflow)."""
    cdef double z
    if x != 0.0:
        return -x
    try:
        if _as_double(-number, &z) and z == 0.0:
            return z
    except (ArithmeticError, TypeError, ValueError):
        pass
    return -x


cdef object _pow_values(Value base, Value exponent):
    """base ** exponent, both Values (beyond micrograd, which asserts a number)."""
    cdef Value out = _fresh()
    _reserve_slots(1)
    cdef Py_ssize_t a = _index(base), i = _index(exponent)
    return _own(out, _op_node(OP_POW, _power(nodes[a].data, nodes[i].data), a, i))


cdef Py_ssize_t _times_minus_one(Py_ssize_t a) except -1:
    """The facade-less node a * -1 (micrograd's -a)."""
    cdef Py_ssize_t c = _new_node(OP_LEAF, -1.0, 0, 0)
    return _op_node(OP_MUL, nodes[a].data * -1.0, a, c)


cdef Py_ssize_t _inverse(Py_ssize_t a) except -1:
    """The facade-less node a ** -1 (micrograd's division)."""
    cdef Py_ssize_t i = _op_node(OP_POWK, _power(nodes[a].data, -1.0), a, 0)
    if nodes[i].op == OP_POWK:  # (a leaf under no_grad)
        nodes[i].u.k = -1.0
        nodes[i].flags = FLAG_INT_K
    return i


cdef Py_ssize_t _unary(Value self, unsigned int op) except -1:
    _reserve_slots(1)
    cdef Py_ssize_t a = _index(self)
    cdef double y = 0.0
    cdef int err = _unary_value(op, nodes[a].data, &y)
    if err:
        _unary_error(op, err)
    return _op_node(op, y, a, 0)


cdef Py_ssize_t _fused(unsigned int op, double data, const int32_t* children,
                       Py_ssize_t n) except -1:
    """An n-ary node over the n child indices (a C buffer: making the node needs no Python
    object, so nothing can fail between the children's leaves and the node that owns them)."""
    cdef Py_ssize_t k
    cdef Py_ssize_t i = _new_ext_node(op, data, n)
    cdef int32_t* ch = _kids(&nodes[i])
    for k in range(n):
        ch[k] = children[k]
        nodes[children[k]].nref += 1
    return i


cdef int _set_side(dict table, Py_ssize_t i, object value, unsigned int flag) except -1:
    """Node i's entry in a side table (_labels with FLAG_LABEL, _opnames with FLAG_OPNAME) set
    to value, and the flag that says it has one. The entry replaced is let go of only after
    both: its __del__ may run any code (even a compaction that moves node i)."""
    cdef object old = table.get(nodes[i].seq)
    table[nodes[i].seq] = value
    nodes[i].flags |= flag
    return 0


cdef object _opname(Py_ssize_t i):  # (a str, or whatever _op a user gave)
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
    return ('', '+', '*', '', 'ReLU', 'tanh', 'exp', 'log', 'sigmoid', '**', 'dot', 'sum', 'softmax',
            'log_softmax', 'logsumexp', 'cross_entropy', '')[op]


cdef class Value:
    """Value(data, _children=(), _op='', label='')
--

A scalar that remembers how it was made, so that backward() can find its gradient.

    The arguments are micrograd's, and its lecture's label. The number and its graph live in the
    compiled node arena; this object holds only its node's index.
    """
    # (the docstring's first line, up to "--", is the signature inspect and help() show)
    cdef Py_ssize_t _i          # arena slot of this Value's node (0: none, __init__ not run)
    cdef PyObject* _dict        # instance __dict__, made by the first extra attribute (p.m = 0.0)
    cdef object __weakref__
    cdef object _gc_anchor      # unused; an object field makes the type GC-capable (see _track)

    def __init__(self, data, _children=(), _op='', label=''):
        cdef double x = _real(data, "data")
        cdef list values
        cdef int32_t* children = NULL
        cdef Py_ssize_t i, old, k, n
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
        n = len(values)
        if n:
            _pyx_reserve()  # so that _hold below cannot fail
            children = <int32_t*>PyMem_Malloc(<size_t>n * sizeof(int32_t))
            if children == NULL:
                raise MemoryError()
        try:
            _reserve_room(1, n)
            for k in range(n):
                children[k] = <int32_t>_index(<Value>values[k])
            if n:  # hand-built node (lecture style): its backward is whatever is assigned
                i = _fused(OP_PY, x, children, n)
                _hold(i, held)
            else:
                i = _new_node(OP_LEAF, x, 0, 0)
        finally:
            PyMem_Free(children)
        try:
            if not (type(_op) is str and not _op):
                _set_side(_opnames, i, _op, FLAG_OPNAME)
            if not (type(label) is str and not label):
                _set_side(_labels, i, label, FLAG_LABEL)
        except BaseException:  # (out of memory) the node goes again, with what it holds
            nodes[i].nref += 1
            _release(i)
            raise
        old = self._i
        if old:  # __init__ called again: rebind
            _unkeep(self)
            self._i = 0
            facades[old] = NULL
            # Python-backward parents that hold this object now hold another node's Value:
            # the old node's count of them is void, so its next facade may never report the
            # node's references (_sole_owner)
            _held_void(old)
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
        cdef double x = _real(value, "data")
        nodes[_bound(self)].data = x

    @data.deleter
    def data(self):
        _no_deleter(self, "data")

    @property
    def grad(self):
        return nodes[_index(self)].grad

    @grad.setter
    def grad(self, value):
        cdef double x = _real(value, "grad")
        nodes[_bound(self)].grad = x

    @grad.deleter
    def grad(self):
        _no_deleter(self, "grad")

    @property
    def label(self):
        cdef Py_ssize_t i = _index(self)
        return _labels[nodes[i].seq] if nodes[i].flags & FLAG_LABEL else ''

    @label.setter
    def label(self, value):
        _set_side(_labels, _bound(self), value, FLAG_LABEL)

    @label.deleter
    def label(self):  # back to the class default, as the reference engine's attribute
        _set_side(_labels, _bound(self), '', FLAG_LABEL)

    # ---- the graph ----
    @property
    def _op(self):
        return _opname(_index(self))

    @_op.setter
    def _op(self, value):
        _set_side(_opnames, _bound(self), value, FLAG_OPNAME)

    @_op.deleter
    def _op(self):  # (as label's)
        _set_side(_opnames, _bound(self), '', FLAG_OPNAME)

    @property
    def _prev(self):
        """The children, as a set of Values (made on demand for nodes whose facade is gone)."""
        return set(_child_values(_index(self)))

    @_prev.setter
    def _prev(self, children):
        # micrograd's __init__ assigns self._prev = set(_children); a subclass with an __init__
        # of its own does the same. A Value still being made (no children, no parents yet) gets
        # these children: its node is made again with them, keeping data, grad, op, label and
        # an assigned _backward. Other nodes cannot change their children.
        cdef list kids = list(children)  # (user iteration: before any index is read)
        cdef Py_ssize_t i = _bound(self)
        cdef object fn = None
        if not kids and _child_count(i) == 0:
            return
        if _child_count(i) or nodes[i].nref > 1:
            raise AttributeError("_prev can only be assigned while a Value is being made (no "
                                 "children yet, not used by another Value), as __init__ does")
        if nodes[i].op == OP_PY and _py_fn(i) != NULL:
            fn = <object>_py_fn(i)
        grad = nodes[i].grad
        Value.__init__(self, nodes[i].data, kids, self._op, self.label)
        self.grad = grad
        if fn is not None:
            self._backward = fn

    @_prev.deleter
    def _prev(self):
        _no_deleter(self, "_prev")

    @property
    def _backward(self):
        """This node's local backward: adds its contribution to its children's grads (the
        callable assigned to it, or its operator's rule)."""
        cdef Py_ssize_t i = _index(self)
        if nodes[i].op == OP_PY:
            if _py_fn(i) != NULL:
                return <object>_py_fn(i)
            return _LocalBackward(self, OP_LEAF)  # made with _children, no _backward: nothing
        return _LocalBackward(self, nodes[i].op)

    @_backward.setter
    def _backward(self, fn):
        global pinned
        cdef Py_ssize_t i
        cdef PyObject* old = NULL
        cdef PyExtra* x
        if not callable(fn):
            raise TypeError(f"_backward must be callable, not {type(fn).__name__!r}")
        i = _bound(self)
        # making the node's children Values may run Python code (a GC pass), which could even
        # make this Value anew and let go of node i, or compact the arena: the node is held,
        # and the arena pinned, until fn is in place
        nodes[i].nref += 1
        pinned += 1
        try:
            _make_python_op(i)
            x = _pyx_of(i)
            old = x.fn
            Py_INCREF(fn)
            x.fn = <PyObject*>fn
        finally:
            pinned -= 1
            _release(i)
        _track(self)  # fn may refer back to this Value (the lecture's closures do)
        Py_XDECREF(old)

    @_backward.deleter
    def _backward(self):
        _no_deleter(self, "_backward")

    @property
    def __class__(self):
        return type(self)

    @__class__.setter
    def __class__(self, cls):
        # (the class is open to new attributes, see _patch_value_type; an object's class stays
        # the one it was made with: the engine's bookkeeping depends on it)
        raise TypeError(f"__class__ assignment is not supported for {type(self).__name__} "
                        "objects of the compiled engine: make the object of the class it "
                        "should have")

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
            return _pow_values(self, <Value>other)
        if not _as_operand(other, &k):
            return NotImplemented
        # micrograd names the node f'**{other}': made here from k for a float or an int that k
        # holds exactly, else (a bool, a huge int, numpy's numbers, a Fraction) kept as text,
        # made before any index is read (formatting may run Python code)
        exact_int = PyLong_CheckExact(other) and -9007199254740992.0 < k < 9007199254740992.0
        name = None if exact_int or PyFloat_CheckExact(other) else f"**{other}"
        out = _fresh()
        _reserve_slots(1)
        a = _index(self)
        i = _op_node(OP_POWK, _power(nodes[a].data, k), a, 0)
        if nodes[i].op != OP_POWK:  # a leaf under no_grad
            return _own(out, i)
        nodes[i].u.k = k
        if exact_int:
            nodes[i].flags = FLAG_INT_K
        elif name is not None:
            _set_side(_opnames, i, name, FLAG_OPNAME)
        return _own(out, i)

    def __rpow__(self, other, mod):  # other ** self
        cdef Py_ssize_t a, c
        cdef double x, y
        if isinstance(other, Value) and mod is None:
            # a Value ** an instance of a subclass: Python asks the subclass first
            return _pow_values(<Value>other, self)
        if mod is not None or not _as_operand(other, &x):
            return NotImplemented
        out = _fresh()
        _reserve_slots(2)
        a = _index(self)
        y = _power(x, nodes[a].data)  # may raise: before any node is made, so none is orphaned
        c = _new_node(OP_LEAF, x, 0, 0)
        return _own(out, _op_node(OP_POW, y, c, a))

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
        if type(self) is not Value:  # through the subclass's own + (and, for a Value, its -)
            if not number:
                return self + (-other)
            if not _as_operand(other, &x):
                return NotImplemented
            return self + _negated(other, x)
        if number:
            if PyFloat_CheckExact(other):
                x = -PyFloat_AS_DOUBLE(other)
            elif PyLong_CheckExact(other):
                x = -PyLong_AsDouble(other) if other else 0.0  # -0 is the int 0, not -0.0
            elif not _as_operand(other, &x):
                return NotImplemented
            else:
                x = _negated(other, x)
        cdef Value out = _fresh()
        _reserve_slots(3)
        a = _index(self)
        b = _new_node(OP_LEAF, x, 0, 0) if number else _times_minus_one(_index(<Value>other))
        return _own(out, _op_node(OP_ADD, nodes[a].data + nodes[b].data, a, b))

    def __rsub__(self, other):  # other - self = (-self) + other
        cdef Py_ssize_t n, c
        cdef double x
        if isinstance(other, Value):
            # a Value - an instance of a subclass: Python asks the subclass first; micrograd's
            # other + (-self), through the subclass's own operators
            return other + (-self)
        if not _as_operand(other, &x):
            return NotImplemented
        if type(self) is not Value:
            return other + (-self)
        out = _fresh()
        _reserve_slots(3)
        n = _times_minus_one(_index(self))
        c = _new_node(OP_LEAF, x, 0, 0)
        return _own(out, _op_node(OP_ADD, nodes[n].data + x, n, c))

    def __truediv__(self, other):  # self / other = self * other**-1
        cdef Py_ssize_t a, b
        cdef double x = 0.0
        cdef bint number = not isinstance(other, Value)
        if number:
            if not _as_operand(other, &x):
                return NotImplemented
            x = _power(x, -1.0)  # other**-1 on the plain number
        if type(self) is not Value:
            return self * (x if number else other**-1)
        cdef Value out = _fresh()
        _reserve_slots(2)
        a = _index(self)
        b = _new_node(OP_LEAF, x, 0, 0) if number else _inverse(_index(<Value>other))
        return _own(out, _op_node(OP_MUL, nodes[a].data * nodes[b].data, a, b))

    def __rtruediv__(self, other):  # other / self = self**-1 * other
        cdef Py_ssize_t p, c
        cdef double x
        if isinstance(other, Value):  # (as __rsub__) micrograd's other * self**-1
            return other * self**-1
        if not _as_operand(other, &x):
            return NotImplemented
        if type(self) is not Value:
            return other * self**-1
        out = _fresh()
        _reserve_slots(3)
        p = _inverse(_index(self))
        c = _new_node(OP_LEAF, x, 0, 0)
        return _own(out, _op_node(OP_MUL, nodes[p].data * x, p, c))

    def backward(self):
        """Back-propagate from this Value: its grad becomes 1, every node it depends on
        accumulates (+=) its gradient, in one C loop."""
        _backward_from(_index(self))

    def recompute(self):
        """Re-evaluate every node under this Value from its leaves' current data, in C, with
        the operators' formulas; return this Value's new data (see _replay.pxi)."""
        return _recompute(_index(self))

    def zero_grad(self):
        """Set the grad of every node under this Value (itself and the leaves included) to 0."""
        _zero_grad_graph(_index(self))

    def __repr__(self):
        cdef Py_ssize_t i = _index(self)
        return f"Value(data={nodes[i].data!r}, grad={nodes[i].grad!r})"

    def __reduce__(self):
        # copy/pickle a Value as a leaf with the same numbers, label and extra attributes
        state = dict(<object>self._dict) if self._dict != NULL else None
        if type(self) is not Value:  # a subclass may keep attributes in __slots__ too
            from micrograd_fast._copying import with_slots
            state = with_slots(self, state)
        return _rebuild, (type(self), self.data, self.grad, self.label, state)


def _rebuild(cls, data, grad, label, state):
    cdef Value v = cls.__new__(cls)
    Value.__init__(v, data, label=label)
    v.grad = grad
    if state:
        for key, value in state.items():
            setattr(v, key, value)
    return v
