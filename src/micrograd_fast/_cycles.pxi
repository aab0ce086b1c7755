# ---- garbage cycles found as soon as a graph lets go of them -------------------------------------
#
# Owns: the check that frees, without waiting for Python's collector, a Value kept alive only by
# a reference cycle of its own -- a hand-built node and its _backward closure (the lecture's
# `out = Value(t, (x,), 'tanh')` with a closure over `out`), or a kept facade (a subclass
# instance, a Value with extra attributes, which its node holds).
#
# Why: such a Value may report its cycle to the GC only while it is its node's sole owner
# (_value_traverse). Under a built-in operator it is not: the parent node counts too, and nodes
# are not objects the GC sees. So when a dropped graph has such nodes at several depths, each
# collection could free only the top level, and a training loop building such graphs grew
# without bound (each level also survives into an older generation, collected more rarely).
#
# How: when teardown lets go of a parent edge and leaves such a node owned by its facade alone,
# the facade is a suspect (_suspect). Once the release is over, each suspect gets a trial
# deletion over the objects it reaches (a bounded breadth-first walk through tp_traverse, as the
# GC's own): every member whose reference count is not all accounted for by references from
# members is reachable from outside, and so is every member it reaches. Objects left out of the
# walk (too many, too widely shared, a function's globals) only make members look reachable,
# never the other way round: a trial can miss garbage (the GC then takes it), not free what is
# in use. A suspect found unreachable is garbage, with the other members not reached; they are
# freed as the GC frees garbage, which promises that no code sees a Value half taken apart:
#   - garbage that something refers to weakly is left to the GC (only it can clear weak
#     references before any code runs);
#   - finalizers (__del__, a generator's close) run first, on whole objects, and the trial is
#     made again (a finalizer may have made some of it reachable);
#   - everything that would die with it must have been looked at (mgf_trial_dies_ok): no
#     member cut short, every other object it refers to referred to from elsewhere or inert;
#   - then each Value among it is cleared through its type's tp_clear, which breaks the cycles,
#     and reference counting frees the rest -- nodes further down included, which may be
#     suspects in turn.
# A suspect found reachable (a kept parameter, its model holding it) is remembered with its
# reference count, and not tried again at every step while that count stays the same.

cdef extern from *:
    """
    #define MGF_TRIAL_CAP 96        /* objects one trial looks at */
    #define MGF_TRIAL_REFS 64       /* an object referred to more often is taken as reachable */
    #define MGF_TRIAL_EACH 256      /* references one member's walk may visit ... */
    #define MGF_TRIAL_VISITS 4096   /* ... and the whole trial */
    #define MGF_TRIAL_DEPS 128      /* objects outside them the garbage may refer to */

    typedef struct {
        PyObject* obj[MGF_TRIAL_CAP];
        Py_ssize_t inner[MGF_TRIAL_CAP];  /* references to obj[k] from members */
        unsigned char reached[MGF_TRIAL_CAP];
        unsigned char opaque[MGF_TRIAL_CAP];  /* too many references to walk: not counted */
        int stack[MGF_TRIAL_CAP];
        int undo[MGF_TRIAL_EACH];         /* the members the current walk has counted */
        int n, nstack, nundo, visits, total;
        PyObject* skip[2];                /* a function's globals and builtins: not walked */
        PyObject* skipped[2 * MGF_TRIAL_CAP];  /* ... but counted once the walk is over */
        int nskipped;
        short table[256];                 /* open addressing over obj: index + 1, 0 = empty */
        /* the last check (mgf_trial_dies_ok): objects outside the members that the garbage
           refers to, and how often */
        PyObject* dep[MGF_TRIAL_DEPS];
        Py_ssize_t depcount[MGF_TRIAL_DEPS];
        int ndep;
    } mgf_trial;

    /* obj's index among the members, adding it when add is set and there is room (-1: not a
       member) */
    static int mgf_trial_find(mgf_trial* t, PyObject* o, int add) {
        size_t h = (((size_t)o >> 4) * (size_t)0x9E3779B97F4A7C15ull) >> (8 * sizeof(size_t) - 8);
        for (;;) {
            int s = t->table[h];
            if (s == 0) {
                if (!add || t->n == MGF_TRIAL_CAP)
                    return -1;
                t->obj[t->n] = o;
                t->inner[t->n] = 0;
                t->reached[t->n] = 0;
                t->opaque[t->n] = 0;
                t->table[h] = (short)(++t->n);
                return t->n - 1;
            }
            if (t->obj[s - 1] == o)
                return s - 1;
            h = (h + 1) & 255;
        }
    }

    /* Containers (objects of the GC's kind, tracked or not: an untracked tuple may still
       hold what dies with it). Classes and modules are left out: they are as good as always
       reachable, and looking through them would spend the walk on a whole program. */
    static int mgf_trial_member(PyObject* o) {
        return PyObject_IS_GC(o) && Py_REFCNT(o) <= MGF_TRIAL_REFS
               && !PyType_Check(o) && !PyModule_CheckExact(o);
    }

    /* first walk: gather the members, counting the references between them (a non-zero
       return stops the member's tp_traverse: it has too many references) */
    static int mgf_trial_count(PyObject* o, void* arg) {
        mgf_trial* t = (mgf_trial*)arg;
        int k;
        if (++t->visits > MGF_TRIAL_EACH)
            return 1;
        if (o != NULL && (o == t->skip[0] || o == t->skip[1])) {
            t->skipped[t->nskipped++] = o;  /* (not walked into; counted if it is a member) */
            return 0;
        }
        if (o == NULL || !mgf_trial_member(o))
            return 0;
        k = mgf_trial_find(t, o, 1);
        if (k >= 0) {
            t->inner[k]++;
            t->undo[t->nundo++] = k;
        }
        return 0;
    }

    /* second walk: mark what the members referred to from outside reach */
    static int mgf_trial_reach(PyObject* o, void* arg) {
        mgf_trial* t = (mgf_trial*)arg;
        int k;
        if (o == NULL || !mgf_trial_member(o))
            return 0;
        k = mgf_trial_find(t, o, 0);
        if (k >= 0 && !t->reached[k]) {
            t->reached[k] = 1;
            t->stack[t->nstack++] = k;
        }
        return 0;
    }

    /* o's references, through tp_traverse -- but not a function's globals and builtins (its
       module's namespace, which would take up the walk). Both walks go through here, so a
       reference left out is left out of the counts too (it then only makes its target look
       referred to from outside). */
    static void mgf_trial_expand(mgf_trial* t, PyObject* o, visitproc visit) {
        traverseproc tr = Py_TYPE(o)->tp_traverse;
        if (tr == NULL)
            return;
        if (PyFunction_Check(o)) {
            t->skip[0] = PyFunction_GET_GLOBALS(o);
    #if PY_VERSION_HEX >= 0x030A0000
            t->skip[1] = ((PyFunctionObject*)o)->func_builtins;
    #endif
        }
        tr(o, visit, t);
        t->skip[0] = t->skip[1] = NULL;
    }

    /* The trial from suspect (tracked; the caller holds `ours` references to it besides the
       others): whether it is reachable only from itself and objects it reaches -- garbage. The
       members, and which of them are reached from outside, are left in t. A member with more
       references than MGF_TRIAL_EACH is not walked (opaque: what it refers to then looks
       referred to from outside); a trial that would visit more than MGF_TRIAL_VISITS gives
       up (not garbage). */
    static int mgf_trial_run(mgf_trial* t, PyObject* suspect, Py_ssize_t ours) {
        int k, u;
        memset(t->table, 0, sizeof(t->table));
        t->n = t->nstack = t->total = 0;
        t->skip[0] = t->skip[1] = NULL;
        if (!PyObject_GC_IsTracked(suspect))
            return 0;
        mgf_trial_find(t, suspect, 1);
        t->inner[0] = ours;
        t->nskipped = 0;
        for (k = 0; k < t->n; k++) {  /* (t->n grows as members are found) */
            int was_skipped = t->nskipped;
            t->visits = t->nundo = 0;
            mgf_trial_expand(t, t->obj[k], mgf_trial_count);
            if (t->visits > MGF_TRIAL_EACH) {  /* cut short: take back what it counted */
                for (u = 0; u < t->nundo; u++)
                    t->inner[t->undo[u]]--;
                t->opaque[k] = 1;
                t->nskipped = was_skipped;
            }
            t->total += t->visits;
            if (t->total > MGF_TRIAL_VISITS)
                return 0;
        }
        for (u = 0; u < t->nskipped; u++) {  /* a function's reference to its globals counts
                                               when they are a member (a private namespace) */
            k = mgf_trial_find(t, t->skipped[u], 0);
            if (k >= 0)
                t->inner[k]++;
        }
        for (k = 0; k < t->n; k++) {
            if (Py_REFCNT(t->obj[k]) > t->inner[k]) {  /* referred to from outside */
                t->reached[k] = 1;
                t->stack[t->nstack++] = k;
            }
        }
        while (t->nstack) {
            k = t->stack[--t->nstack];
            if (!t->opaque[k])
                mgf_trial_expand(t, t->obj[k], mgf_trial_reach);
        }
        return !t->reached[0];
    }

    static int mgf_trial_unfinalized(PyObject* o) {
        return Py_TYPE(o)->tp_finalize != NULL && !PyObject_GC_IsFinalized(o);
    }

    /* whether o has weak references (a weak reference list, where its type has one; a type
       object's own list is elsewhere, but types are never members) */
    static int mgf_trial_weakly_referred(PyObject* o) {
        Py_ssize_t off = Py_TYPE(o)->tp_weaklistoffset;
        return off != 0 && *(PyObject**)((char*)o + off) != NULL;
    }

    /* What the last trial's garbage needs before it can be cleared: 0 nothing; 1 finalizers
       (__del__, a generator's close) to run first, as the collector runs them; 2 something
       this check leaves to the collector: a weak reference to it (the collector clears those
       before any code can see the garbage, which no API here can do) or a legacy tp_del. */
    static int mgf_trial_needs(mgf_trial* t) {
        int k, need = 0;
        for (k = 0; k < t->n; k++) {
            if (t->reached[k])
                continue;
            if (mgf_trial_weakly_referred(t->obj[k]) || Py_TYPE(t->obj[k])->tp_del != NULL)
                return 2;
            if (mgf_trial_unfinalized(t->obj[k]))
                need = 1;
        }
        return need;
    }

    /* objects whose death runs no code and frees nothing else: no finalizer, no weak
       references, no references of their own */
    static int mgf_trial_inert(PyObject* o) {
        return PyFloat_CheckExact(o) || PyLong_CheckExact(o) || PyUnicode_CheckExact(o)
               || PyBytes_CheckExact(o) || o == Py_None || o == Py_True || o == Py_False;
    }

    /* third walk, over the garbage: count its references to non-members */
    static int mgf_trial_dep(PyObject* o, void* arg) {
        mgf_trial* t = (mgf_trial*)arg;
        int k;
        if (o == NULL || mgf_trial_inert(o) || mgf_trial_find(t, o, 0) >= 0)
            return 0;  /* (a member: garbage itself, or reached, and then it stays) */
        for (k = 0; k < t->ndep; k++)
            if (t->dep[k] == o) {
                t->depcount[k]++;
                return 0;
            }
        if (t->ndep == MGF_TRIAL_DEPS)
            return 1;
        t->dep[t->ndep] = o;
        t->depcount[t->ndep++] = 1;
        return 0;
    }

    /* Whether everything that dies with the last trial's garbage has been looked at: the
       garbage was walked whole (none of it cut short), and every other object it refers to
       either stays (referred to from elsewhere too) or is inert. Freeing runs no code but the
       garbage's own (whose finalizers run first) -- as the collector guarantees: no weak
       reference callback nor finalizer of something else finds a Value half taken apart. */
    static int mgf_trial_dies_ok(mgf_trial* t) {
        int k;
        traverseproc tr;
        t->ndep = 0;
        for (k = 0; k < t->n; k++) {
            if (t->reached[k])
                continue;
            if (t->opaque[k])
                return 0;
            tr = Py_TYPE(t->obj[k])->tp_traverse;
            if (tr != NULL && tr(t->obj[k], mgf_trial_dep, t))
                return 0;  /* (too many to follow) */
        }
        for (k = 0; k < t->ndep; k++)
            if (Py_REFCNT(t->dep[k]) <= t->depcount[k])
                return 0;
        return 1;
    }

    /* Run the last trial's garbage's finalizers, all of it kept alive meanwhile. Then the
       trial must be made again: a finalizer may have made some of it reachable. */
    static void mgf_trial_finalize(mgf_trial* t) {
        PyObject* held[MGF_TRIAL_CAP];
        int k, m = 0;
        for (k = 0; k < t->n; k++)
            if (!t->reached[k]) {
                Py_INCREF(t->obj[k]);
                held[m++] = t->obj[k];
            }
        for (k = 0; k < m; k++)
            if (mgf_trial_unfinalized(held[k]))
                PyObject_CallFinalizer(held[k]);
        for (k = 0; k < m; k++)
            Py_DECREF(held[k]);
    }

    /* The garbage members of the last trial that are instances of type vt, each with a new
       reference, into out; how many. */
    static int mgf_trial_values(mgf_trial* t, PyTypeObject* vt, PyObject** out) {
        int k, m = 0;
        for (k = 0; k < t->n; k++)
            if (!t->reached[k] && PyObject_TypeCheck(t->obj[k], vt)) {
                Py_INCREF(t->obj[k]);
                out[m++] = t->obj[k];
            }
        return m;
    }

    /* what the collector calls to break o's references: its type's tp_clear (a subclass's
       clears its slots, then calls Value's) */
    static void mgf_tp_clear(PyObject* o) {
        inquiry clear = Py_TYPE(o)->tp_clear;
        if (clear != NULL)
            clear(o);
    }
    """
    enum: MGF_TRIAL_CAP
    ctypedef struct mgf_trial:
        pass
    bint mgf_trial_run(mgf_trial* t, PyObject* suspect, Py_ssize_t ours) noexcept
    int mgf_trial_needs(mgf_trial* t) noexcept
    bint mgf_trial_dies_ok(mgf_trial* t) noexcept
    void mgf_trial_finalize(mgf_trial* t) noexcept
    int mgf_trial_values(mgf_trial* t, _TypeSlots* vt, PyObject** out) noexcept
    void mgf_tp_clear(PyObject* o) noexcept


cdef extern from "Python.h":
    PyObject* PyLong_FromSsize_t(Py_ssize_t)
    Py_ssize_t PyLong_AsSsize_t(PyObject*)
    void PyErr_Clear()
    Py_ssize_t Py_REFCNT(PyObject*)


cdef bint _cyclic_seen = False  # a PY node or a kept facade has been made: teardown watches
cdef PyObject** _suspects = NULL  # owned references: facades to try (see above), in order
cdef Py_ssize_t _n_suspects = 0, _suspects_cap = 0
cdef Py_ssize_t cycles_freed = 0  # suspects found garbage and cleared (arena_stats)


cdef void _suspect(Py_ssize_t c) noexcept:
    """Teardown has let go of a parent edge of node c, a PY node or one that keeps its facade:
    if the facade is all that holds c now, try it once the release is over."""
    global _suspects, _suspects_cap, _n_suspects
    cdef PyObject* o = facades[c]
    cdef void* tmp
    if o == NULL or not _sole_owner(c) or not PyObject_GC_IsTracked(o):
        return
    if not (nodes[c].flags & FLAG_KEEP) and _py_fn(c) == NULL:
        return  # a PY node without a callable (cleared by a trial): nothing closes a cycle
    if _remembered(o):
        return
    if _n_suspects == _suspects_cap:
        tmp = PyMem_RawRealloc(_suspects, <size_t>(_suspects_cap * 2 + 16) * sizeof(PyObject*))
        if tmp == NULL:  # out of memory: the GC will find it, as it always could
            return
        _suspects = <PyObject**>tmp
        _suspects_cap = _suspects_cap * 2 + 16
    Py_INCREF(<object>o)
    _suspects[_n_suspects] = o
    _n_suspects += 1


cdef void _try_suspect() noexcept:
    """Take the last suspect off the list; if the trial finds it garbage, free it and the other
    Values found garbage with it as the GC would: their finalizers first (then the trial
    again), then each Value's tp_clear. Garbage the check leaves to the GC (weakly referred
    to, or the trial could not see all that dies with it) is left alone, and so is a suspect
    found reachable: it is remembered (_remember), not tried again while its reference count
    stays the same. Called by _drain with the arena consistent and pinned (clearing runs
    Python code: the releases it causes are queued, and _drain frees them next)."""
    global _n_suspects, cycles_freed
    cdef mgf_trial t
    cdef PyObject* found[MGF_TRIAL_CAP]
    cdef int k, m, need
    _n_suspects -= 1
    cdef PyObject* o = _suspects[_n_suspects]
    cdef bint garbage = mgf_trial_run(&t, o, 1)
    if garbage:
        need = mgf_trial_needs(&t)
        if need == 1:
            mgf_trial_finalize(&t)
            garbage = mgf_trial_run(&t, o, 1) and mgf_trial_needs(&t) == 0
        elif need == 2:
            garbage = False
        garbage = garbage and mgf_trial_dies_ok(&t)
    if garbage:
        m = mgf_trial_values(&t, _value_type, found)
        for k in range(m):
            mgf_tp_clear(found[k])
        for k in range(m):
            Py_DECREF(<object>found[k])
        cycles_freed += 1
    else:
        _remember(o, Py_REFCNT(o) - 1)
    Py_DECREF(<object>o)


cdef void _remember(PyObject* o, Py_ssize_t refs) noexcept:
    """Note in the facade's spare slot (_gc_anchor) that a trial found it reachable with refs
    references: a kept parameter (extra attributes) becomes a suspect at every step's teardown,
    and its model still holds it. (A wrong guess only leaves garbage to the GC.)"""
    cdef PyObject** anchor = <PyObject**>(<char*>o + _anchor_offset)
    cdef PyObject* memo = PyLong_FromSsize_t(refs)
    if memo == NULL:
        PyErr_Clear()
        return
    Py_XDECREF(anchor[0])
    anchor[0] = memo


cdef inline bint _remembered(PyObject* o) noexcept:
    """Whether _remember found o reachable with the references it has now."""
    cdef PyObject* memo = (<PyObject**>(<char*>o + _anchor_offset))[0]
    return (memo != NULL and PyLong_CheckExact(<object>memo)
            and PyLong_AsSsize_t(memo) == Py_REFCNT(o))
