# ---- numbers: Python objects to doubles, and math errors as Python floats raise them ---------
#
# Owns: what counts as a real number (anything float() accepts, but not str/bytes; for an
# operator's operand, a numbers.Real), and the
# exception each math failure raises (the type and message reference.py's would have). Every
# operator converts its operands here *before* it reads a node index, because float() may run
# Python code (a GC pass, a __float__) that moves nodes.


cdef extern from *:
    """
    #include <string.h>
    /* numpy.float64 (a float subclass) once seen: its float() is its stored double, exactly
       (numpy's own conversion only reads it), so it needs no call. Known by name, not by
       importing numpy (no dependency); numpy's types are static, so the pointer stays valid. */
    static PyTypeObject* mgf_np_float64 = NULL;

    /* a float subclass whose float(o) is its stored double: one that keeps float's own
       conversion, or numpy.float64 (recorded here when first seen; _as_double then checks
       it first) -- no Python call needed */
    static CYTHON_INLINE int mgf_plain_float_subclass(PyObject* o) {
        PyTypeObject* t = Py_TYPE(o);
        if (!PyFloat_Check(o)) return 0;
        if (t->tp_as_number != NULL
                && t->tp_as_number->nb_float == PyFloat_Type.tp_as_number->nb_float)
            return 1;
        if (mgf_np_float64 == NULL && strcmp(t->tp_name, "numpy.float64") == 0
                && !(t->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
            mgf_np_float64 = t;
            return 1;
        }
        return 0;
    }
    """
    bint mgf_plain_float_subclass(object o)
    void* mgf_np_float64


cdef int _as_double_slow(object o, double* out) except -1:
    if mgf_plain_float_subclass(o):
        out[0] = PyFloat_AS_DOUBLE(o)
        return 1
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
    if <void*>Py_TYPE(<PyObject*>o) == mgf_np_float64:  # (NULL until numpy's is seen)
        out[0] = PyFloat_AS_DOUBLE(o)
        return 1
    return _as_double_slow(o, out)


import numbers as _numbers_module
cdef object _Real = _numbers_module.Real


cdef inline int _as_real(object o, double* out) except -1:
    """_as_double for an operator's operand, read as float's own operators read it: only a
    real number (numbers.Real -- int, bool, float, Fraction, numpy's numbers), and an instance
    of a float or int subclass is the number it holds, whatever __float__ the subclass has.
    0 for anything else."""
    if PyFloat_Check(o):
        out[0] = PyFloat_AS_DOUBLE(o)
        return 1
    if PyLong_Check(o):  # (bool too)
        out[0] = PyLong_AsDouble(o)  # OverflowError for huge ints, as float + int
        return 1
    if isinstance(o, _Real):
        return _as_double(o, out)
    return 0


cdef inline int _as_operand(object o, double* out) except -1:
    """_as_real, and what float's own operators refuse (a Decimal, an object with only a
    __float__) is 0, so that the operator returns NotImplemented (a TypeError); another
    autograd library's value is a TypeError saying so."""
    if _as_real(o, out):
        return 1
    _refuse_foreign_value(o)
    return 0


cdef int _refuse_foreign_value(object o) except -1:
    """TypeError for another autograd library's value (upstream micrograd's Value, a torch
    tensor): left to its own reflected operator, it would wrap our Value as its data, and
    backward() would never reach our nodes -- a model that silently does not train."""
    if hasattr(o, "backward") and hasattr(o, "grad") and hasattr(o, "data"):
        t = type(o)
        raise TypeError(f"a micrograd_fast Value cannot be combined with a {t.__module__}."
                        f"{t.__qualname__}: gradients cannot flow between two autograd "
                        f"libraries (make both with the same Value class)")
    return 0


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
