# cython: language_level=3, embedsignature=True, embedsignature.format=clinic
"""The compiled engine: micrograd's Value over a flat C node arena.

A Value is a thin facade holding the index of its node; the numbers, the graph and the gradients
live in the arena, and backward() is one C loop over it. Behaviour, numbers and exceptions are
those of micrograd_fast/reference.py, which is the spec. One file per job:

    _arena.pxi    the node records and the edge arena: allocation, compaction
    _release.pxi  freeing nodes: the iterative release, teardown, giving memory back
    _sweep.pxi    backward(): topological order and each op's local backward
    _numbers.pxi  Python numbers to doubles; math errors raised as floats raise them
    _facade.pxi   the Value object's life cycle: freelist, binding to nodes, GC support
    _cycles.pxi   a dropped graph's hand-built / kept Values freed without waiting for the GC
    _value.pxi    the Value type: each operator's forward and the nodes it records
    _handbuilt.pxi  the lecture's hand-built nodes: a Python _backward, an op's rule as _backward
    _neuron.pxi   a plain nn.Neuron's fields read from its instance dict (memoized)
    _fused.pxi    dot / layer / sum_values: one n-ary node with the unfused numbers
    _gradmode.pxi no_grad / enable_grad: per-thread switch; operators' result nodes under it
    _replay.pxi   recompute() of a retained graph, graph zero_grad, zero_grads, assign
    _optim.pxi    the optimizers' C state and update loops (micrograd_fast/optim.py drives them)
    _classify.pxi softmax / log_softmax / logsumexp / cross_entropy: stable n-ary nodes
    _check.pxi    arena statistics and the consistency check the tests run
"""
cimport cython
import operator
from cpython.exc cimport PyErr_WriteUnraisable
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check, PyFloat_CheckExact
from cpython.long cimport PyLong_AsDouble, PyLong_Check, PyLong_CheckExact
from cpython.mem cimport (PyMem_Free, PyMem_Malloc, PyMem_RawCalloc, PyMem_RawFree, PyMem_RawMalloc,
                          PyMem_RawRealloc)
from cpython.object cimport PyObject
from cpython.dict cimport PyDict_GetItemWithError
from cpython.sequence cimport PySequence_Fast_GET_SIZE, PySequence_Fast_ITEMS
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from libc.math cimport NAN, exp, isinf, log
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, qsort
from libc.string cimport memcpy, memset

from micrograd_fast._fmath cimport (F_DOMAIN, F_RANGE, F_ZERO_DIV, py_exp, py_log, py_pow,
                                    py_sigmoid, py_tanh, py_tanh_grad)


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
        void* tp_vectorcall     # how calls of the type object itself are made (PEP 590)
        unsigned long tp_flags
        void* tp_init
        unsigned int tp_version_tag  # renewed whenever the class is changed
    PyObject* PyObject_Init(PyObject*, _TypeSlots*)
    void PyObject_ClearWeakRefs(PyObject*)
    void PyErr_Fetch(PyObject**, PyObject**, PyObject**)
    void PyErr_Restore(PyObject*, PyObject*, PyObject*)
    PyObject* Py_TYPE "(PyObject*)Py_TYPE" (PyObject*)  # (C: a PyTypeObject*)
    void PyType_Modified(_TypeSlots*)
    void PyObject_GC_Track(void*)
    void PyObject_GC_UnTrack(void*)
    int PyObject_GC_IsTracked(PyObject*) noexcept
    int PyObject_GenericSetAttr(PyObject*, PyObject*, PyObject*) noexcept
    bint PyIndex_Check(object)
    PyObject* PyDict_New() except NULL


cdef extern from "Python.h":
    object PyObject_GenericGetDict(object o, void* context)
    int PyDict_Next(object d, Py_ssize_t* pos, PyObject** key, PyObject** value) noexcept


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
    /* the flag that makes CPython 3.10+ refuse class attribute assignment (Value.cube = f) */
    #ifdef Py_TPFLAGS_IMMUTABLETYPE
    #define MGF_IMMUTABLETYPE Py_TPFLAGS_IMMUTABLETYPE
    #else
    #define MGF_IMMUTABLETYPE 0UL
    #endif
    /* expands where used, after Cython has defined the Value struct */
    #define MGF_ANCHOR_OFFSET offsetof(struct __pyx_obj_14micrograd_fast_7_engine_Value, _gc_anchor)
    /* a Value's node index read through a borrowed pointer (no reference counting) */
    #define MGF_IDX(o) (((struct __pyx_obj_14micrograd_fast_7_engine_Value*)(o))->_i)
    #define mgf_is_subtype(a, b) PyType_IsSubtype((PyTypeObject*)(a), (PyTypeObject*)(b))
    /* PyObject_GC_IsTracked without the call, for the deallocator (every Value's death): in
       CPython 3.9-3.13's default builds the collector's header is the two words right before
       the object, and the object is tracked when the first is non-zero -- what that function
       reads. Elsewhere (free-threaded builds, later versions), the function itself. */
    #if !defined(Py_GIL_DISABLED) && PY_VERSION_HEX < 0x030E0000
    #define mgf_gc_is_tracked(o) (((const uintptr_t*)(o))[-2] != 0)
    #else
    #define mgf_gc_is_tracked(o) PyObject_GC_IsTracked(o)
    #endif
    """
    Value mgf_take(PyObject* o)  # hands our reference over to Cython (no extra incref)
    void mgf_revive(PyObject* o, void* t)
    bint mgf_gc_is_tracked(PyObject* o)
    Py_ssize_t MGF_ANCHOR_OFFSET
    unsigned long MGF_IMMUTABLETYPE
    Py_ssize_t MGF_IDX(PyObject* o) noexcept nogil
    bint mgf_is_subtype(PyObject* a, void* b) noexcept


include "_arena.pxi"
include "_release.pxi"
include "_sweep.pxi"
include "_numbers.pxi"
include "_facade.pxi"
include "_cycles.pxi"
include "_gradmode.pxi"
include "_value.pxi"
include "_handbuilt.pxi"
include "_neuron.pxi"
include "_fused.pxi"
include "_replay.pxi"
include "_optim.pxi"
include "_classify.pxi"
include "_check.pxi"


_resize(INITIAL_SLOTS)
_patch_value_type()
