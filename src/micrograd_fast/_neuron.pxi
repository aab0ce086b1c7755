# ---- a plain Neuron's fields, read from its instance dict -------------------------------------
#
# Owns: how the fused paths (_fused.pxi) read nn.Neuron's w, b, nonlin and act without a Python
# attribute access per field: _plain_neuron for the forward (with a memo of the last reading of
# each dict, valid while the dict is unchanged) and _plain_fields for parameters()/zero_grad().
# A plain Neuron (type exactly nn.Neuron) has no descriptors for these names, so its instance
# dict holds what attribute access would return.


# ---- Value's activation methods, which the fused paths compute themselves ----
# A script may give the Value class methods of its own (Value.relu = my_relu; CPython 3.10+).
# Neuron.__call__ calls act.relu() -- the script's, then -- so the fused paths hand such calls to
# the neurons, as long as relu, tanh or sigmoid is not the engine's. Checked once per layer or
# MLP call: Value's version tag changes whenever the class is changed.

cdef unsigned int _methods_tag = 0  # Value's version tag when they were last found the engine's
cdef tuple _own_methods = (Value.relu, Value.tanh, Value.sigmoid)  # as the class defines them


cdef inline bint _activations_ours() except -1:
    cdef unsigned int tag = (<_TypeSlots*>_value_type).tp_version_tag
    if tag != 0 and tag == _methods_tag:
        return True
    return _recheck_activations()


cdef bint _recheck_activations() except -1:
    global _methods_tag
    try:
        ours = (Value.relu is _own_methods[0] and Value.tanh is _own_methods[1]
                and Value.sigmoid is _own_methods[2])
    except AttributeError:  # (deleted from the class)
        return False
    if ours:  # (the look-ups gave the class a version tag; 0 if the tags ran out)
        _methods_tag = (<_TypeSlots*>_value_type).tp_version_tag
    return ours


cdef object _s_w = "w"  # interned, as the attribute names Neuron.__init__ assigns
cdef object _s_b = "b"
cdef object _s_nonlin = "nonlin"
cdef object _s_act = "act"


cdef int _activation(object nonlin, PyObject* act) except -1:
    """The op a plain Neuron applies to its dot: OP_LEAF (none) when nonlin is false, else by its
    act ('relu' when the neuron has none)."""
    if not nonlin:
        return OP_LEAF
    if act == NULL or <object>act == "relu":
        return OP_RELU
    if <object>act == "tanh":
        return OP_TANH
    if <object>act == "sigmoid":
        return OP_SIGMOID
    raise ValueError(f"unknown activation {<object>act!r}")


cdef extern from *:
    """
    /* A dict's version tag (PEP 509): a new value from a global counter whenever the dict is
       created or changed, on every path that changes it, through CPython 3.12 (deprecated
       there, hence the pragmas). 3.13 stores instance attributes into the values a
       materialized dict shares without renewing its tag, so there the memo is off. */
    #if PY_VERSION_HEX < 0x030D0000
    #define MGF_DICT_VERSIONED 1
    #if defined(__GNUC__)
    #pragma GCC diagnostic push
    #pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    #elif defined(_MSC_VER)
    #pragma warning(push)
    #pragma warning(disable: 4996)
    #endif
    static inline uint64_t MGF_DICT_VERSION(PyObject* d) {
        return ((PyDictObject*)d)->ma_version_tag;
    }
    #if defined(__GNUC__)
    #pragma GCC diagnostic pop
    #elif defined(_MSC_VER)
    #pragma warning(pop)
    #endif
    #else
    #define MGF_DICT_VERSIONED 0
    #define MGF_DICT_VERSION(d) ((uint64_t)0)
    #endif
    """
    bint MGF_DICT_VERSIONED
    uint64_t MGF_DICT_VERSION(PyObject* d) noexcept


cdef struct _NeuronMemo:
    PyObject* d         # the instance dict read (compared only: may be dead by now)
    uint64_t version    # its version tag then
    PyObject* w         # what it held (alive while the dict is, with that version)
    PyObject* b
    int act


cdef enum:
    MEMO_SLOTS = 1024  # direct-mapped by the dict's address (40 KiB, zeroed as a C static)

cdef _NeuronMemo _memo[MEMO_SLOTS]


cdef inline _NeuronMemo* _memo_slot(PyObject* d) noexcept:
    cdef size_t p = <size_t>d
    return &_memo[((p >> 4) ^ (p >> 14)) & (MEMO_SLOTS - 1)]


cdef int _plain_neuron(object n, PyObject** w, PyObject** b) except -2:
    """The activation op of a plain Neuron, with its w and b borrowed from its instance dict:
    one walk over the dict's few entries, matching the interned names by identity. -1 when w or
    b is not there (the caller then calls the neuron, which gets what -- or the error -- a
    Python access would).

    The reading is memoized per dict while its version tag is unchanged (Python <= 3.12): a
    training loop reads the same neurons every sample, and the walk is ~300 instructions of a
    ~600-instruction neuron. Only a reading that depends on nothing but the dict is kept (all
    four names found, nonlin a bool or an int, act a str). Other kinds of nonlin or act: -1, so
    that the neuron reads them itself -- no Python code runs here."""
    cdef object d = PyObject_GenericGetDict(n, NULL)
    cdef _NeuronMemo* memo = NULL
    cdef PyObject* nonlin = NULL
    cdef PyObject* act_name = NULL
    cdef PyObject* key
    cdef PyObject* value
    cdef Py_ssize_t pos = 0, found = 0
    cdef int act
    if MGF_DICT_VERSIONED:
        memo = _memo_slot(<PyObject*>d)
        if memo.d == <PyObject*>d and memo.version == MGF_DICT_VERSION(<PyObject*>d):
            w[0] = memo.w
            b[0] = memo.b
            return memo.act
    w[0] = b[0] = NULL
    while found < 4 and PyDict_Next(d, &pos, &key, &value):
        if key == <PyObject*>_s_w:
            w[0] = value
        elif key == <PyObject*>_s_b:
            b[0] = value
        elif key == <PyObject*>_s_nonlin:
            nonlin = value
        elif key == <PyObject*>_s_act:
            act_name = value
        else:
            continue
        found += 1  # (four distinct keys: four matches are all of them)
    if w[0] == NULL or b[0] == NULL:
        return -1
    if act_name == NULL:  # maybe not interned, or not there (the class default: relu)
        act_name = PyDict_GetItemWithError(d, _s_act)
    if nonlin == NULL or not (type(<object>nonlin) is bool or type(<object>nonlin) is int) or \
            (act_name != NULL and type(<object>act_name) is not str):
        # the neuron itself reads these, after its dot, as Neuron.__call__ does: their
        # truth or comparison may run Python code (which must not run with fields borrowed)
        return -1
    act = _activation(<object>nonlin, act_name)  # (no Python code runs for these types)
    if found == 4 and memo != NULL:
        memo.d = <PyObject*>d
        memo.version = MGF_DICT_VERSION(<PyObject*>d)
        memo.w = w[0]
        memo.b = b[0]
        memo.act = act
    return act


cdef bint _plain_fields(object neuron, PyObject** w, PyObject** b) except -1:
    """A plain Neuron's w (a list) and b, borrowed from its instance dict; False when either is
    missing, w is not a list, or the dict holds anything but w, b, nonlin and act -- a
    `parameters` of the instance's own, say (the caller then asks neuron.parameters())."""
    cdef object d = PyObject_GenericGetDict(neuron, NULL)
    cdef PyObject* key
    cdef PyObject* value
    cdef Py_ssize_t pos = 0
    w[0] = b[0] = NULL
    while PyDict_Next(d, &pos, &key, &value):
        if key == <PyObject*>_s_w:
            w[0] = value
        elif key == <PyObject*>_s_b:
            b[0] = value
        elif key != <PyObject*>_s_nonlin and key != <PyObject*>_s_act:
            return False
    return w[0] != NULL and b[0] != NULL and type(<object>w[0]) is list
