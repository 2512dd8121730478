# cython: language_level=3, boundscheck=False, wraparound=False
"""The node-wide shared counters' per-request step in C (rate-limiting's policy local on a node).

`ShmCells.take_one` is `meshway.plugins._shm.ShmCounters.take_one` without the Python loop over
the workers' regions: the same table (the module's rules there), the same reads and the same
writes in the same order. The Python methods stay the reference and the pure path
(`http1_impl = python`); tests/unit/plugins/test_shm_compiled.py runs both on random tables.

Loads and stores of cells go through acquire/release atomics: on x86-64 they are the plain
moves the Python code makes, and they keep the compiler from reordering the slot claim
(expires=0, count, hash, expires) that other workers' readers rely on.
"""
from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.dict cimport PyDict_Size
from libc.stdlib cimport free, malloc

cdef extern from *:
    """
    static inline long long mw_load(long long *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void mw_store(long long *p, long long v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    """
    long long mw_load(long long* p) noexcept nogil
    void mw_store(long long* p, long long v) noexcept nogil

__all__ = ["ShmCells"]

DEF _ENTRY = 3  # cells per entry: key hash, expires, count


cdef class ShmCells:
    """One worker's view of a mapped table: every region's base cell, this worker's own."""

    cdef Py_buffer view
    cdef bint held
    cdef long long* cells
    cdef Py_ssize_t* bases
    cdef Py_ssize_t nbases
    cdef Py_ssize_t own
    cdef long long mask
    cdef Py_ssize_t probes
    cdef dict overflow

    def __cinit__(self, object buffer, tuple bases, Py_ssize_t own, long long mask, Py_ssize_t probes,
                  dict overflow=None):
        cdef Py_ssize_t i, size
        PyObject_GetBuffer(buffer, &self.view, PyBUF_WRITABLE)
        self.held = True
        self.cells = <long long*>self.view.buf
        size = self.view.len // 8
        self.nbases = len(bases)
        self.bases = <Py_ssize_t*>malloc(max(1, self.nbases) * sizeof(Py_ssize_t))
        if self.bases == NULL:
            raise MemoryError()
        for i in range(self.nbases):
            self.bases[i] = bases[i]
            if self.bases[i] < 0 or self.bases[i] + (mask + 1) * _ENTRY > size:
                raise ValueError("a region lies outside the mapped table")
        if own < 0 or own + (mask + 1) * _ENTRY > size:
            raise ValueError("this worker's region lies outside the mapped table")
        self.own = own
        self.mask = mask
        self.probes = probes
        self.overflow = overflow  # the Python table's per-worker counts of keys it could not place

    def __dealloc__(self):
        free(self.bases)
        if self.held:
            PyBuffer_Release(&self.view)

    cpdef long long take_one(self, long long h, double limit, long long exp, long long sec, long long extra):
        """The node-wide live count of key `h` plus `extra` (this worker's overflow count);
        when below `limit`, this request is counted in this worker's region. Returns the count
        before the request, or -1 - that count when it was to be counted and the region had no
        free slot within `probes` of the key's home (the caller counts it in its overflow)."""
        cdef long long* cells = self.cells
        cdef long long home = (h & self.mask) * _ENTRY
        cdef long long total = extra
        cdef Py_ssize_t at = -1, b, i, base
        for b in range(self.nbases):
            base = self.bases[b]
            i = base + home
            if mw_load(&cells[i]) == h and mw_load(&cells[i + 1]) > sec:  # most keys sit in their home slot
                total += mw_load(&cells[i + 2])
                if base == self.own:
                    at = i
            elif mw_load(&cells[i]) != 0:
                total += self._probe_count(base, h, sec)
        if total >= limit:
            return total
        if at >= 0:
            mw_store(&cells[at + 2], mw_load(&cells[at + 2]) + 1)  # single writer: still h's, live
            return total
        if self._probe_add(h, exp, sec):
            return total
        return -1 - total

    def take_fast(self, long long h, double limit, long long exp, double now):
        """`ShmCounters.take_one` where it needs no Python: the count before this request (counted
        when below `limit`), or -1 when the Python method must do the whole step instead (keys
        counted in the overflow table, or no free slot: then nothing was written here)."""
        if self.overflow is not None and PyDict_Size(self.overflow) != 0:
            return -1
        cdef long long total = self.take_one(h, limit, exp, <long long>now, 0)
        return total if total >= 0 else -1

    cdef long long _probe_count(self, Py_ssize_t base, long long h, long long sec) noexcept:
        """The live count of h in one region, past its home slot (`ShmCounters._probe_count`)."""
        cdef long long* cells = self.cells
        cdef long long home = h & self.mask, seen
        cdef Py_ssize_t j, i
        for j in range(1, self.probes):
            i = base + ((home + j) & self.mask) * _ENTRY
            seen = mw_load(&cells[i])
            if seen == h and mw_load(&cells[i + 1]) > sec:
                return mw_load(&cells[i + 2])
            if seen == 0:
                break
        return 0

    cdef bint _probe_add(self, long long h, long long exp, long long sec) noexcept:
        """Count h in its live entry in this worker's region, else claim the first free or dead
        slot (`ShmCounters._probe_add`); False when there is none within `probes`."""
        cdef long long* cells = self.cells
        cdef long long home = h & self.mask, seen
        cdef Py_ssize_t j, i, free_at = -1
        for j in range(self.probes):
            i = self.own + ((home + j) & self.mask) * _ENTRY
            seen = mw_load(&cells[i])
            if seen == 0:
                if free_at < 0:
                    free_at = i
                break
            if mw_load(&cells[i + 1]) <= sec:
                if free_at < 0:
                    free_at = i
            elif seen == h:
                mw_store(&cells[i + 2], mw_load(&cells[i + 2]) + 1)
                return True
        if free_at < 0:
            return False
        mw_store(&cells[free_at + 1], 0)  # dead while it changes hands (see _shm's rules)
        mw_store(&cells[free_at + 2], 1)
        mw_store(&cells[free_at], h)
        mw_store(&cells[free_at + 1], exp)
        return True
