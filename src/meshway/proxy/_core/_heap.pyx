# cython: language_level=3
"""glibc's `malloc_trim(0)` for `meshway.proxy._memory`, without ctypes.

ctypes (its Python modules, `_ctypes` and libffi) is ~0.35 MiB of an idle worker's memory, only
to reach this one function. `HAS_MALLOC_TRIM` is false on a C library without it (musl gives
free pages back by itself); `_memory` then falls back to ctypes, as where this is not built.
"""

cdef extern from *:
    """
    #include <stdlib.h>
    #ifdef __GLIBC__
    #include <malloc.h>
    static int meshway_malloc_trim(size_t pad) { return malloc_trim(pad); }
    #define MESHWAY_HAS_MALLOC_TRIM 1
    #else
    static int meshway_malloc_trim(size_t pad) { (void)pad; return 0; }
    #define MESHWAY_HAS_MALLOC_TRIM 0
    #endif
    """
    int meshway_malloc_trim(size_t pad) nogil
    int MESHWAY_HAS_MALLOC_TRIM

__all__ = ["HAS_MALLOC_TRIM", "malloc_trim"]

HAS_MALLOC_TRIM = bool(MESHWAY_HAS_MALLOC_TRIM)


def malloc_trim(size_t pad):
    """Free heap pages back to the system, as glibc's; 1 when some memory was released."""
    with nogil:
        r = meshway_malloc_trim(pad)
    return r
