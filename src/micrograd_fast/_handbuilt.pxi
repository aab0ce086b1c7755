# ---- hand-built nodes: a Python _backward, and an operator's rule handed out as _backward ----
#
# Owns: what the lecture does by hand. Assigning a callable to a node's _backward turns the node
# into an OP_PY node (_make_python_op): its children move into an edge block, its op name into
# _opnames, and its children's Values are held (_hold, _facade.pxi) so that the callable finds
# the very objects it closed over. Reading _backward from an operator's node gives its rule as a
# callable (_LocalBackward), which still runs that rule after the node was given another one.
# The Value properties that do this (_backward, _prev) are in _value.pxi; the sweep calls the
# Python callable from _backprop_node (_sweep.pxi); the cycles such closures make are
# _cycles.pxi's.


cdef int _make_python_op(Py_ssize_t i) except -1:
    """Turn node i into an OP_PY node (its backward becomes a Python callable), keeping its
    children, its name and its numbers."""
    global _graph_edits, _edges_unordered
    cdef unsigned int op = nodes[i].op
    cdef tuple held
    cdef object name
    cdef Py_ssize_t n, e
    if op == OP_PY:
        return 0
    _graph_edits += 1  # cached recompute orders (_replay.pxi) must look at the ops again
    name = _opname(i)
    if not (nodes[i].flags & FLAG_OPNAME) and name:
        _set_side(_opnames, i, name, FLAG_OPNAME)
    held = _child_values(i)
    _pyx_reserve()  # so that _hold below cannot fail
    if _is_ext(op):
        nodes[i].b = 0  # a classification node's integer: its children stay in place
    else:
        n = (nodes[i].a != 0) + (nodes[i].b != 0)
        e = 0  # a leaf has no block (and there may be no edge array yet)
        if n:
            _reserve_edges(n)
            e = _alloc_edges(n)  # the edges (and their nref) move into a block
            _edges_unordered = True  # ... at the top, above younger nodes' blocks
            edges[e] = nodes[i].a
            if n == 2:
                edges[e + 1] = nodes[i].b
        nodes[i].u.e = e
        nodes[i].a = <int32_t>n
        nodes[i].b = 0
    nodes[i].op = OP_PY
    _hold(i, held)
    return 0


@cython.auto_pickle(False)  # (micrograd's closure does not pickle either)
cdef class _LocalBackward:
    """A node's operator rule as Value._backward hands it out: calling it adds the node's
    contribution to its children's grads by that rule -- also once _backward has been given
    something else, as micrograd's closure would (the lecture's "save it, replace it, call or
    put it back"; a hook that calls the saved rule). The rule is kept at the time it is read:
    the op, and what an assignment to _backward overwrites (a power's exponent, an n-ary
    node's integer)."""
    cdef Value _v
    cdef uint64_t _seq  # the node's creation number: __init__ run again binds _v to another
    cdef unsigned int _op
    cdef double _k
    cdef int32_t _b

    def __cinit__(self, Value v, unsigned int op):
        cdef Py_ssize_t i = _index(v)
        self._v = v
        self._seq = nodes[i].seq
        self._op = op
        self._k = nodes[i].u.k if op == OP_POWK else 0.0
        self._b = nodes[i].b if _is_ext(op) else 0

    def __call__(self):
        cdef Py_ssize_t i = _index(self._v)
        cdef unsigned int op = nodes[i].op
        cdef mgf_node saved
        cdef int32_t* kids
        if self._op == OP_LEAF or nodes[i].seq != self._seq:
            return None  # (the Value was made anew: its old node's rule has nothing to reach)
        if op == self._op:
            _backprop_node(i)
            return None
        if op != OP_PY:  # (a node is only ever turned into a PY node)
            return None
        # the node is a PY node now (_make_python_op): put the rule's layout back for the one
        # call, then the PY layout again. The rule runs no Python code, so nothing can move.
        saved = nodes[i]
        if _is_ext(self._op):  # children in place; only the integer was cleared
            nodes[i].b = self._b
        else:  # children moved into an edge block: back into a and b
            kids = _kids(&nodes[i])
            nodes[i].a = kids[0] if saved.a > 0 else 0
            nodes[i].b = kids[1] if saved.a > 1 else 0
            nodes[i].u.k = self._k
        nodes[i].op = self._op
        try:
            _backprop_node(i)
        finally:
            nodes[i].op = saved.op
            nodes[i].a = saved.a
            nodes[i].b = saved.b
            nodes[i].u = saved.u
        return None

    def __copy__(self):  # a function, as micrograd's closure: copies are the object itself
        return self

    def __deepcopy__(self, memo):
        return self

    def __repr__(self):
        return f"<local backward of {self._v!r} ({_opname(_index(self._v))!r})>"
