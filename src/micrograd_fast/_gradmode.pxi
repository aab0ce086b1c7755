# ---- grad mode: no_grad / enable_grad, per thread (as torch's) ---------------------------------
#
# Owns: whether the operators record a graph. Inside no_grad() every operator (the fused ones too)
# computes its value exactly as usual and returns a plain leaf: no parent edges, no n-ary child
# block. The flag is thread-local (a C thread-local int), and a process-wide count of threads
# that have switched recording off guards it, so with grad on everywhere the check on an
# operator's path is one load of a global and a branch never taken.
#
# Invariant: an operator makes its result node through _op_node / _op_fused / _op_ext; under
# no_grad these make a leaf and release whatever the operator made for it only (a constant leaf,
# the inner a*-1 of a - b: fresh nodes nobody owns yet, nref 0), so no orphan node is left.

cdef extern from *:
    """
    #if defined(_MSC_VER)
    #  define MGF_THREAD_LOCAL __declspec(thread)
    #elif defined(__GNUC__) || defined(__clang__)
    #  define MGF_THREAD_LOCAL __thread
    #else
    #  define MGF_THREAD_LOCAL _Thread_local
    #endif
    /* 1 while this thread is inside no_grad(); zero-initialised in every thread */
    static MGF_THREAD_LOCAL int mgf_grad_off = 0;
    """
    int mgf_grad_off

cdef Py_ssize_t _grad_off_threads = 0  # threads whose mgf_grad_off is 1 (changed under the GIL)


cdef inline bint _grad_off() noexcept:
    return _grad_off_threads != 0 and mgf_grad_off != 0


cdef inline int _drop_orphan(Py_ssize_t c) except -1:
    # a node made for this operation alone (nobody owns it yet) is freed with what it alone holds
    if c and nodes[c].nref == 0:
        nodes[c].nref = 1
        _release(c)
    return 0


cdef Py_ssize_t _leaf_result(double data, Py_ssize_t a, Py_ssize_t b) except -1:
    cdef Py_ssize_t i = _new_node(OP_LEAF, data, 0, 0)  # first: `live` stays above 0 meanwhile
    _drop_orphan(a)
    _drop_orphan(b)
    return i


cdef inline Py_ssize_t _op_node(unsigned int op, double data, Py_ssize_t a, Py_ssize_t b) except -1:
    """An operator's result node: _new_node, or under no_grad a plain leaf with its value."""
    if _grad_off():
        return _leaf_result(data, a, b)
    return _new_node(op, data, a, b)


cdef Py_ssize_t _op_fused(unsigned int op, double data, const int32_t* children,
                         Py_ssize_t n) except -1:
    """An n-ary operator's result node over the n child indices (_fused), or a leaf under
    no_grad."""
    cdef Py_ssize_t i, k
    if not _grad_off():
        return _fused(op, data, children, n)
    i = _new_node(OP_LEAF, data, 0, 0)
    for k in range(n):
        _drop_orphan(children[k])
    return i


cdef Py_ssize_t _op_ext(unsigned int op, double data, Py_ssize_t o,
                        Py_ssize_t nchildren) except -1:
    """_ext_node for an operator whose edge block at o is filled in (and counted in the
    children's nref), or under no_grad a leaf: the block is given back and the edges undone."""
    cdef Py_ssize_t i, k
    if not _grad_off():
        return _ext_node(op, data, o, nchildren)
    try:
        i = _new_node(OP_LEAF, data, 0, 0)
        for k in range(nchildren):
            nodes[edges[o + k]].nref -= 1
        for k in range(nchildren):
            _drop_orphan(edges[o + k])
    finally:
        _free_edges(o, nchildren)
    return i


@cython.boundscheck(False)
@cython.wraparound(False)
cdef bint _dot_leaf(Value out, object wseq, object xseq, Py_ssize_t b) except -1:
    """dot()'s all-Values case under no_grad: bind out to a leaf holding the sum (as _dot sums:
    left to right from the bias) and return True; False (nothing made) when an item is not a
    Value with a node -- _dot's general path then does it."""
    cdef Py_ssize_t n = min(len(wseq), len(xseq)), k, w, x
    cdef PyObject** wv = PySequence_Fast_ITEMS(wseq)
    cdef PyObject** xv = PySequence_Fast_ITEMS(xseq)
    cdef double acc = nodes[b].data
    for k in range(n):
        if not (isinstance(<object>wv[k], Value) and isinstance(<object>xv[k], Value)):
            return False
        w = (<Value>wv[k])._i
        x = (<Value>xv[k])._i
        if w == 0 or x == 0:
            return False
        acc = acc + nodes[w].data * nodes[x].data
    _own(out, _new_node(OP_LEAF, acc, 0, 0))
    return True


cdef bint _set_grad_enabled_c(bint mode) noexcept:
    """Set this thread's grad mode; return the previous one."""
    global _grad_off_threads, mgf_grad_off
    cdef bint was = not mgf_grad_off
    if mode and not was:
        mgf_grad_off = 0
        _grad_off_threads -= 1
    elif not mode and was:
        mgf_grad_off = 1
        _grad_off_threads += 1
    return was


def is_grad_enabled():
    """Whether operators record a graph in this thread (False inside no_grad())."""
    return not mgf_grad_off


def _set_grad_enabled(mode):
    """Set this thread's grad mode (True: record graphs); return the previous mode."""
    return _set_grad_enabled_c(bool(mode))


class _GradMode:
    """Context manager and decorator that sets this thread's grad mode and restores it on exit
    (exceptions included). Re-entrant; as a decorator each call gets its own context."""

    _mode = True

    def __new__(cls, fn=None):
        # `@no_grad` without parentheses (as torch allows): the class called on the function
        self = object.__new__(cls)
        self._saved = []  # the modes to restore, one per active `with` of this object
        return self if fn is None else self(fn)

    def __enter__(self):
        self._saved.append(_set_grad_enabled_c(self._mode))
        return None

    def __exit__(self, exc_type, exc, tb):
        _set_grad_enabled_c(self._saved.pop())

    def __call__(self, fn):
        from micrograd_fast._gradmode_decorator import decorate

        return decorate(type(self), fn)


class no_grad(_GradMode):
    """Operators inside ``with no_grad():`` (or in a function decorated ``@no_grad()``) return
    plain leaves holding the usual forward value and record no graph. Per thread, as torch's."""

    _mode = False


class enable_grad(_GradMode):
    """Turns recording back on inside no_grad() (per thread, as torch's enable_grad)."""

    _mode = True
