# ---- introspection and the arena consistency check (tests) ------------------------------------


def arena_stats():
    """Statistics of the node arena: live nodes, capacity, high-water mark, memory; and of the
    edge arena (the children of n-ary nodes): edges in use, dead ones, capacity; and how many
    dropped hand-built or kept Values were freed without waiting for the GC."""
    node_bytes = sizeof(mgf_node) + sizeof(PyObject*)  # record + facade pointer
    return {
        "live": live,
        "capacity": cap,
        "high_water": top - 1,
        "dead_slots": top - 1 - live,  # reclaimed by the next compaction
        "node_size": sizeof(mgf_node),
        "compactions": compactions,
        "topo_fallbacks": topo_fallbacks,
        "cycles_freed": cycles_freed,  # dropped Values freed without the GC (_cycles.pxi)
        "bytes_per_node": node_bytes,
        "edges": etop - edead,
        "dead_edges": edead,  # reclaimed with the dead slots
        "edge_capacity": ecap,
        "bytes": cap * node_bytes + ecap * sizeof(int32_t),
        "order_capacity": scratch_cap,  # backward()'s order buffer (entries of 4 bytes)
    }




def _restart_epochs():
    """Start the passes' epochs over from 0, as after 2**32 backward() passes (tests: every
    value a mark can hold comes up again in the passes that follow)."""
    epoch_reset()


def _check_arena():
    """Raise AssertionError if the arena breaks an invariant (tests call it after each test):
    live nodes have valid ops and edge blocks, children sit below their parents, each nref is
    the number of parent edges plus the live facade, dead slots are cleared, and the live nodes'
    edge blocks do not overlap and account for every edge not counted dead."""
    cdef Py_ssize_t i, k, c, m, count = 0, nedges = 0
    cdef uint32_t* refs = <uint32_t*>PyMem_RawCalloc(<size_t>cap + 1, sizeof(uint32_t))
    cdef uint32_t* helds = <uint32_t*>PyMem_RawCalloc(<size_t>cap + 1, sizeof(uint32_t))
    cdef int32_t* kids
    cdef unsigned char* used = <unsigned char*>PyMem_RawCalloc(<size_t>etop + 1, 1)
    cdef unsigned char* queued = <unsigned char*>PyMem_RawCalloc(<size_t>cap + 1, 1)
    if refs == NULL or helds == NULL or used == NULL or queued == NULL:
        PyMem_RawFree(refs)
        PyMem_RawFree(helds)
        PyMem_RawFree(used)
        PyMem_RawFree(queued)
        raise MemoryError()
    try:
        # nodes on the _pending list (a teardown that ran out of memory left them there): dead,
        # not freed yet -- their children are still counted, and they still count as live
        i, k = _pending, 0
        while i != NIL:
            if not 0 < i < top or nodes[i].nref or queued[i] or k > top:
                raise AssertionError(f"pending list: bad node {i}")
            queued[i] = 1
            i = nodes[i].mark
            k += 1
        for i in range(1, top):
            if nodes[i].nref == 0 and not queued[i]:
                if nodes[i].op != OP_LEAF or nodes[i].a or nodes[i].b or facades[i] != NULL:
                    raise AssertionError(f"dead slot {i} not cleared")
                continue
            count += 1
            if nodes[i].op > OP_PY:
                raise AssertionError(f"node {i}: bad op {nodes[i].op}")
            if _is_ext(nodes[i].op):
                if not 0 <= nodes[i].u.e <= etop - nodes[i].a:
                    raise AssertionError(f"node {i}: edge block at {nodes[i].u.e} beyond {etop}")
                for k in range(nodes[i].a):
                    if used[nodes[i].u.e + k]:
                        raise AssertionError(f"node {i}: edge {nodes[i].u.e + k} shared")
                    used[nodes[i].u.e + k] = 1
                nedges += nodes[i].a
                if nodes[i].op == OP_PY and not 0 <= nodes[i].b < _pyx_cap:
                    raise AssertionError(f"node {i}: Python-backward entry {nodes[i].b}")
                if OP_SOFTMAX <= nodes[i].op <= OP_CROSS_ENTROPY and not 0 <= nodes[i].b < nodes[i].a:
                    raise AssertionError(f"node {i}: output / target {nodes[i].b} of {nodes[i].a}")
                kids, m = _kids(&nodes[i]), nodes[i].a
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
                if (nodes[i].op == OP_PY and _py_held(i) != NULL
                        and k < len(<tuple>_py_held(i))
                        and (<Value>(<tuple>_py_held(i))[k])._i == c):
                    helds[c] += 1  # (it holds c's Value: see _hold)
            if facades[i] != NULL:
                refs[i] += 1
                if (<Value>facades[i])._i != i:
                    raise AssertionError(f"node {i}: its facade points at {(<Value>facades[i])._i}")
        for i in range(1, top):
            if (nodes[i].nref or queued[i]) and refs[i] != nodes[i].nref:
                raise AssertionError(f"node {i}: nref {nodes[i].nref}, counted {refs[i]}")
            if nodes[i].nref and _held_count(i) >= 0 and _held_count(i) != helds[i]:
                raise AssertionError(f"node {i}: held {_held_count(i)}, counted {helds[i]}")
        if count != live:
            raise AssertionError(f"live is {live}, counted {count}")
        if nedges != etop - edead:
            raise AssertionError(f"{etop} edges, {edead} dead, but {nedges} in live nodes' blocks")
    finally:
        PyMem_RawFree(refs)
        PyMem_RawFree(helds)
        PyMem_RawFree(used)
        PyMem_RawFree(queued)
    return count
