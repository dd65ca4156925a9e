"""Page-cache residency of a piece of the LMDB map, by ``mincore(2)``.

A read of bytes that are in memory costs a copy; a read of bytes on disk also waits for
the disk. The block store reads large ranges in a worker thread so that such a wait never
stalls the event loop, but handing work to a thread and back costs more than copying a
1 MiB range that is already in memory. :func:`resident` tells the two apart: it asks the
kernel whether every page under a buffer is in the page cache (``mincore`` reports
residency for file-backed mappings whether or not this process touched the pages yet).

Linux and CPython only (``ctypes.pythonapi`` gives the buffer's address); anywhere else, or
if any call fails, :func:`resident` answers False and the caller takes the thread. The
answer can be stale by the time the bytes are copied (the kernel may evict a page in
between); that costs one disk read on the event loop, never a wrong byte.
"""

from __future__ import annotations

import ctypes
import mmap
import sys

PAGE = mmap.PAGESIZE
_LOW_BIT = bytes(i & 1 for i in range(256))  # mincore: bit 0 of each byte = resident


class _PyBuffer(ctypes.Structure):
    """CPython's ``Py_buffer`` (``obj`` as a plain pointer: released by PyBuffer_Release)."""

    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


def _bind() -> tuple[object, object, object] | None:
    if not sys.platform.startswith("linux") or not hasattr(ctypes, "pythonapi"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mincore = libc.mincore
        mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
        mincore.restype = ctypes.c_int
        get_buffer = ctypes.pythonapi.PyObject_GetBuffer
        get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
        get_buffer.restype = ctypes.c_int
        release = ctypes.pythonapi.PyBuffer_Release
        release.argtypes = [ctypes.POINTER(_PyBuffer)]
        release.restype = None
    except (OSError, AttributeError):
        return None
    return mincore, get_buffer, release


_CALLS = _bind()


def address(view: memoryview) -> int | None:
    """The address of the first byte of ``view`` (a contiguous buffer, e.g. an LMDB value
    read with ``buffers=True``), or None if it cannot be told here. The address stays
    valid only while the buffer's memory does (for an LMDB value: its read transaction)."""
    if _CALLS is None:
        return None
    _mincore, get_buffer, release = _CALLS
    buf = _PyBuffer()
    try:
        if get_buffer(view, ctypes.byref(buf), 0) != 0:  # type: ignore[operator]
            return None
    except (BufferError, TypeError, ValueError):
        return None
    try:
        return int(buf.buf) if buf.buf else None
    finally:
        release(ctypes.byref(buf))  # type: ignore[operator]


def resident(view: memoryview) -> bool:
    """True if every page under ``view`` (a contiguous buffer, e.g. a slice of an LMDB
    value read with ``buffers=True``) is in the page cache now; False if any is not, or if
    that cannot be told here. Costs one system call (≈ 4 µs for 1 MiB)."""
    if _CALLS is None or view.nbytes == 0:
        return False
    where = address(view)  # the caller's view keeps the memory there while we ask
    if where is None:
        return False
    start = where & ~(PAGE - 1)
    length = where + view.nbytes - start
    vec = ctypes.create_string_buffer((length + PAGE - 1) // PAGE)
    if _CALLS[0](start, length, vec) != 0:  # type: ignore[operator]
        return False
    return vec.raw.translate(_LOW_BIT).count(0) == 0
