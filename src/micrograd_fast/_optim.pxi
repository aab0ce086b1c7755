# ---- optimizers: per-parameter state in C arrays, one update loop per step ---------------------
#
# Owns: the compiled half of micrograd_fast/optim.py. The optimizer classes there check the
# hyper-parameters, count steps and compute each step's scalars (bias corrections, 1 - beta ...)
# once, for both engines; the loops here apply PyTorch's single-tensor update rules to every
# parameter, with the operation order of optim.py's pure-Python loops, so both engines agree bit
# for bit. Each step reads every parameter's node index from its Value (compaction moves nodes).

from libc.math cimport sqrt
from cpython.mem cimport PyMem_Calloc


@cython.final
@cython.auto_pickle(False)
cdef class _OptimState:
    """An optimizer's parameters (the Values, held) and two state arrays indexed like them:
    SGD's momentum buffer in the first; Adam's exp_avg and exp_avg_sq."""
    cdef tuple params  # the Values
    cdef Py_ssize_t n  # len(params)
    cdef double* s0    # momentum_buffer / exp_avg
    cdef double* s1    # exp_avg_sq

    def __cinit__(self, params):
        self.params = _values_seq(params, "optimizer")
        self.n = len(self.params)
        self.s0 = <double*>PyMem_Calloc(<size_t>(self.n if self.n else 1), sizeof(double))
        self.s1 = <double*>PyMem_Calloc(<size_t>(self.n if self.n else 1), sizeof(double))
        if self.s0 == NULL or self.s1 == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self.s0)
        PyMem_Free(self.s1)
        self.s0 = self.s1 = NULL

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def sgd(self, double lr, double momentum, double keep, double weight_decay, bint nesterov,
            bint first):
        """One SGD step (keep = 1 - dampening; first: the momentum buffer starts as the grad)."""
        cdef PyObject** items = PySequence_Fast_ITEMS(self.params)
        cdef double* buf = self.s0
        cdef Py_ssize_t k, i
        cdef double p, g, b
        for k in range(self.n):
            i = (<Value>items[k])._i
            p = nodes[i].data
            g = nodes[i].grad
            if weight_decay != 0:
                g = g + weight_decay * p
            if momentum != 0:
                b = g if first else buf[k] * momentum + keep * g
                buf[k] = b
                g = g + momentum * b if nesterov else b
            nodes[i].data = p - lr * g

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.cdivision(True)
    def adam(self, double neg_step_size, double bc2_sqrt, double eps, double w1, bint small_w1,
             double beta2, double w2, int decay_mode, double decay):
        """One Adam / AdamW step. w1 = 1 - beta1 (exp_avg.lerp_(grad, w1), torch's two-sided
        lerp: small_w1 = |w1| < 0.5); w2 = 1 - beta2; decay_mode 1: grad += decay * param (Adam's
        L2), 2: param *= decay (AdamW's decoupled decay, decay = 1 - lr * weight_decay)."""
        cdef PyObject** items = PySequence_Fast_ITEMS(self.params)
        cdef double* ms = self.s0
        cdef double* vs = self.s1
        cdef double w1c = 1 - w1
        cdef Py_ssize_t k, i
        cdef double p, g, m, v
        for k in range(self.n):
            i = (<Value>items[k])._i
            p = nodes[i].data
            g = nodes[i].grad
            if decay_mode == 1:
                g = g + decay * p
            elif decay_mode == 2:
                p = p * decay
            m = ms[k]
            m = m + w1 * (g - m) if small_w1 else g - (g - m) * w1c
            v = vs[k] * beta2 + (w2 * g) * g
            ms[k] = m
            vs[k] = v
            nodes[i].data = p + (neg_step_size * m) / (sqrt(v) / bc2_sqrt + eps)

    def plain(self, group, params_type):
        """Whether group (param_groups[0]) can be used by a step as it is: a dict whose 'params'
        is of params_type (the optimizer's own list) and whose other values are all floats,
        bools or tuples of floats, exactly -- what the constructor and the lr setter store. The
        common case, checked with no Python per entry; otherwise optim.py checks and converts."""
        cdef Py_ssize_t pos = 0
        cdef PyObject* key
        cdef PyObject* value
        if type(group) is not dict:
            return False
        while PyDict_Next(group, &pos, &key, &value):
            if PyFloat_CheckExact(<object>value) or type(<object>value) is bool:
                continue
            if type(<object>value) is tuple:
                for item in <tuple>value:
                    if type(item) is not float:
                        return False
                continue
            if not (type(<object>value) is params_type and <object>key == "params"):
                return False
        return True

    def zero_grad(self):
        cdef PyObject** items = PySequence_Fast_ITEMS(self.params)
        cdef Py_ssize_t k
        for k in range(self.n):
            nodes[(<Value>items[k])._i].grad = 0.0

    def get_state(self, int which):
        """State array 0 or 1 as a list of floats."""
        cdef double* s = self.s0 if which == 0 else self.s1
        return [s[k] for k in range(self.n)]

    def set_state(self, int which, values):
        """Set state array 0 or 1 from n real numbers (checked before any is set)."""
        cdef double* s = self.s0 if which == 0 else self.s1
        cdef list xs = [float(x) for x in values]
        cdef Py_ssize_t k
        if len(xs) != self.n:
            raise ValueError(f"optimizer state: {len(xs)} numbers for {self.n} parameters")
        for k in range(self.n):
            s[k] = xs[k]
