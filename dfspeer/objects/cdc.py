"""Content-defined chunking of a byte stream (FastCDC), and the choice of a chunker.

FastCDC (Xia et al., "FastCDC: a Fast and Efficient Content-Defined Chunking Approach for
Data Deduplication", USENIX ATC 2016; the 2020 journal version adds the two-bytes-a-step
rolling) cuts where a Gear rolling hash of the last bytes matches a mask: a stricter mask
before the average size and a looser one after it (normalized chunking, NC = 1), no cut
before the minimum size (cut-point skipping) and a forced cut at the maximum. A cut depends
only on the bytes around it, so inserting bytes into a file moves the boundaries near the
edit and leaves every other chunk -- and its digest -- as it was: the next version of an
edited file shares all but a few chunks with the last one. The rolling hash is the compiled
(Cython) core of ``pyfastcdc`` (about 3 GB/s on one core here); without that core the upload
path falls back to fixed-size chunks (a warning, logged once) rather than to a pure-Python
hash that would be a hundred times slower.

:func:`iter_cdc_chunks` has the interface of :func:`dfspeer.objects.chunker.iter_chunks`:
an async iterator of chunks from an async stream of pieces of any sizes. Its cut points are
a function of the content only, whatever the sizes of the pieces: a chunk is cut only once
``max_size`` bytes past its start are buffered (or the stream ended), which is exactly what
the cut of the whole buffer at once sees (FastCDC never looks further than ``max_size``).
Memory: at most about twice ``max_size`` bytes plus one piece are buffered. Sizes are
bytes; every chunk but the last is in ``[min_size, max_size]``. FastCDC's mean chunk is about
``avg_size + min_size / 2`` (2.6 MiB for 512 KiB / 2 MiB / 8 MiB on this machine's files).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from typing import Protocol

from dfspeer.config import PeerConfig
from dfspeer.objects.chunker import iter_chunks, iter_cut_chunks

log = logging.getLogger(__name__)

CHUNKING_MODES = ("cdc", "fixed")
"""A bucket's ``chunking``: content-defined (FastCDC) or fixed ``chunk_size_bytes``."""

Chunker = Callable[[AsyncIterable[bytes], "int | None"], AsyncIterator[bytes]]
"""``chunker(body, max_bytes)``: the chunks of ``body``; raises EntityTooLarge past
``max_bytes`` and IncompleteBody when the stream breaks off."""


class _Chunk(Protocol):
    @property
    def length(self) -> int: ...


class _Cutter(Protocol):
    def cut_buf(self, buf: memoryview) -> Iterator[_Chunk]: ...


class _CutterFactory(Protocol):
    def __call__(self, avg_size: int, *, min_size: int, max_size: int) -> _Cutter: ...


_warned = False


def compiled_core() -> _CutterFactory | None:
    """``pyfastcdc``'s compiled ``FastCDC`` class, or None when it cannot be imported
    (the package is missing, or only its pure-Python implementation is usable)."""
    try:
        module = importlib.import_module("pyfastcdc.cy")
    except ImportError:
        return None
    factory: _CutterFactory | None = getattr(module, "FastCDC", None)
    return factory


def _first_cut(cutter: _Cutter, window: memoryview) -> int:
    """Length of the first chunk FastCDC cuts from ``window``, bytes. The cutter's iterator
    (which holds the view) dies with this frame, so the caller may release the view."""
    cuts = iter(cutter.cut_buf(window))
    length = next(cuts).length
    del cuts
    return int(length)


async def iter_cdc_chunks(
    body: AsyncIterable[bytes],
    *,
    min_size: int,
    avg_size: int,
    max_size: int,
    max_bytes: int | None = None,
    core: _CutterFactory | None = None,
) -> AsyncIterator[bytes]:
    """Yield the content-defined chunks of ``body`` (sizes in bytes, module docstring).

    ``core``: the FastCDC class (default: :func:`compiled_core`). Raises RuntimeError when
    there is no compiled core, :class:`EntityTooLarge` as soon as more than ``max_bytes``
    arrived, :class:`IncompleteBody` if the stream breaks (connection reset / EOF error),
    ValueError for sizes FastCDC refuses (min 64 B..1 MiB, avg 256 B..4 MiB, max 1 KiB..16
    MiB, min <= avg <= max).
    """
    factory = core or compiled_core()
    if factory is None:
        raise RuntimeError("pyfastcdc's compiled core is not available")
    cutter = factory(avg_size, min_size=min_size, max_size=max_size)
    async for chunk in iter_cut_chunks(
        body, max_size, lambda window: _first_cut(cutter, window), max_bytes=max_bytes
    ):
        yield chunk


def cdc_available() -> bool:
    """True when content-defined chunking can run (the compiled core imports); logs a
    warning the first time it cannot."""
    global _warned
    if compiled_core() is not None:
        return True
    if not _warned:
        _warned = True
        log.warning(
            "pyfastcdc's compiled core is not available: content-defined chunking falls "
            "back to fixed-size chunks (pip install pyfastcdc on a supported platform)"
        )
    return False


def chunker_for(chunking: str, config: PeerConfig) -> tuple[Chunker, int]:
    """The chunker for a bucket's ``chunking`` ("cdc" or "fixed", see
    :data:`CHUNKING_MODES`; anything else reads as "fixed") and the largest chunk it cuts,
    bytes. "cdc" uses ``config.cdc_*_chunk_bytes``; without the compiled core it is "fixed"
    (:func:`cdc_available`)."""
    if chunking == "cdc" and cdc_available():
        lo, avg, hi = (
            config.cdc_min_chunk_bytes,
            config.cdc_avg_chunk_bytes,
            config.cdc_max_chunk_bytes,
        )

        def cdc(body: AsyncIterable[bytes], max_bytes: int | None) -> AsyncIterator[bytes]:
            return iter_cdc_chunks(
                body, min_size=lo, avg_size=avg, max_size=hi, max_bytes=max_bytes
            )

        return cdc, hi
    size = config.chunk_size_bytes

    def fixed(body: AsyncIterable[bytes], max_bytes: int | None) -> AsyncIterator[bytes]:
        return iter_chunks(body, size, max_bytes=max_bytes)

    return fixed, size
