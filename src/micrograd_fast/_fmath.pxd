# cython: language_level=3
"""Python-float semantics in C: the compiled engine must give the reference engine's numbers AND
its exceptions, so each helper mirrors what CPython's float / math module does for that input.

They return an error code instead of raising, so they stay `noexcept nogil` in the sweep:
"""
from libc.math cimport exp, floor, fmod, fabs, copysign, isnan, isinf, isfinite, log

cdef extern from *:
    """
    #include <math.h>
    /* libm's pow, called through a pointer the compiler cannot see through: with a constant
       exponent (x ** -1 for division) gcc would otherwise fold pow(x, -1.0) into 1.0 / x,
       which differs from pow -- and from Python's float ** -- in the last bit for some x */
    static double (*volatile mgf_pow_ptr)(double, double) = pow;
    static double mgf_libm_pow(double x, double y) { return mgf_pow_ptr(x, y); }
    """
    double mgf_libm_pow(double x, double y) nogil

cdef enum:
    F_OK = 0
    F_ZERO_DIV = 1    # ZeroDivisionError
    F_DOMAIN = 2      # ValueError
    F_RANGE = 3       # OverflowError


cdef inline bint _is_odd_integer(double x) noexcept nogil:
    return fmod(fabs(x), 2.0) == 1.0


cdef inline int py_pow(double iv, double iw, double* out) noexcept nogil:
    """iv ** iw exactly as CPython's float_pow (special cases first, then libm pow), except that
    a negative base to a fractional power is F_DOMAIN where Python would return a complex."""
    cdef bint negate = False
    cdef double ix
    if iw == 0.0:
        out[0] = 1.0
        return F_OK
    if isnan(iv):
        out[0] = iv
        return F_OK
    if isnan(iw):
        out[0] = 1.0 if iv == 1.0 else iw
        return F_OK
    if isinf(iw):
        iv = fabs(iv)
        if iv == 1.0:
            out[0] = 1.0
        elif (iw > 0.0) == (iv > 1.0):
            out[0] = fabs(iw)
        else:
            out[0] = 0.0
        return F_OK
    if isinf(iv):
        if iw > 0.0:
            out[0] = iv if _is_odd_integer(iw) else fabs(iv)
        else:
            out[0] = copysign(0.0, iv) if _is_odd_integer(iw) else 0.0
        return F_OK
    if iv == 0.0:
        if iw < 0.0:
            return F_ZERO_DIV
        out[0] = iv if _is_odd_integer(iw) else 0.0
        return F_OK
    if iv < 0.0:
        if iw != floor(iw):
            return F_DOMAIN
        iv = -iv
        negate = _is_odd_integer(iw)
    if iv == 1.0:
        out[0] = -1.0 if negate else 1.0
        return F_OK
    ix = mgf_libm_pow(iv, iw)
    if isinf(ix):
        return F_RANGE
    out[0] = -ix if negate else ix
    return F_OK


cdef inline int py_exp(double x, double* out) noexcept nogil:
    """math.exp: OverflowError when a finite x overflows."""
    out[0] = exp(x)
    if isinf(out[0]) and isfinite(x):
        return F_RANGE
    return F_OK


cdef inline int py_log(double x, double* out) noexcept nogil:
    """math.log: ValueError for x <= 0 (and -inf); nan stays nan."""
    if isnan(x) or x > 0.0:
        out[0] = log(x)
        return F_OK
    return F_DOMAIN


cdef inline double py_tanh(double x) noexcept nogil:
    """The lecture's tanh, (e**2x - 1) / (e**2x + 1), to the last bit -- without its overflow:
    where e**2x overflows the result is 1.0 (as libm's tanh)."""
    cdef double e = exp(2 * x)
    if isinf(e):
        return 1.0
    return (e - 1) / (e + 1)


cdef inline int py_tanh_grad(double t, double* out) noexcept nogil:
    """The lecture's d tanh, 1 - t**2, with Python's t**2 (libm's pow, not always t * t); as
    there, F_RANGE (an OverflowError) when t**2 overflows -- a tanh whose data was set huge."""
    cdef double t2 = 0.0  # (py_pow leaves it unset on some errors)
    cdef int err = py_pow(t, 2.0, &t2)
    out[0] = 1 - t2
    return err


cdef inline double py_sigmoid(double x) noexcept nogil:
    # both branches call exp on a non-positive number, so neither can overflow
    cdef double z
    if x >= 0.0:
        return 1.0 / (1.0 + exp(-x))
    z = exp(x)
    return z / (1.0 + z)
