"""Batch arrays in shared memory, for Dask workers on the client's own machine.

A batch of 100,000 seed-circuit parameter sets is 32 MB: sent inside task
messages it is pickled by the client, forwarded by the scheduler and unpickled
by a worker, all on the cores the engine needs (with few cores, that work
takes back much of what a second worker gains). Workers on the client's
machine instead read their rows from a POSIX shared-memory segment and write
their results into another, so a task message carries only names and row
ranges (:class:`ArrayRef`).

Ownership: the client creates and unlinks every segment
(:class:`multiprocessing.shared_memory.SharedMemory`, so Python's resource
tracker removes them even if the client process is killed); workers only map
them, through ``/dev/shm`` (Linux), so a worker never registers or unlinks a
segment. Where a worker cannot map one (another machine, another ``/dev/shm``,
not Linux) it raises :class:`SharedMemoryUnavailable`, and the caller sends
rows in messages instead. Segments are reserved in full when created
(``posix_fallocate``): a full ``/dev/shm`` is a clear error here, not a SIGBUS
when a page is first touched.

Staging while tasks travel: the client may submit a call's tasks before it
has copied their rows, holding a lock per part of the rows (:meth:`Segment.hold`,
open-file-description byte-range locks of the segment file, one byte per
part) that it releases as each part's rows are in place
(:meth:`Segment.ready`); a worker waits for the lock of the part it needs
(:func:`wait_ready`) before it reads. The lock calls are system calls on both
sides, so the worker also sees every byte written before the release.

Reusing an output segment: a task can outlive its call (cancelled while
running, or a duplicate after a worker was given up for dead), and must not
write into the segment once a later call uses it. Each call stamps the
segment with a number of its own (:meth:`Segment.stamp`), and a worker writes
only inside :func:`writing` and only if the stamp is still its call's; a
stamp waits for writers already inside, so no stale write can land after it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import mmap
import os
import secrets
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

#: where Linux keeps POSIX shared memory; workers map segments through it
SHM_DIR = Path("/dev/shm")
#: byte alignment of each array in a segment (a cache line, and SIMD-friendly)
ALIGN = 64
#: segment mappings a worker keeps open (segments are reused across calls, so few names recur)
_MAPPINGS = 8
#: the byte whose lock guards writes into a segment against a new stamp (readiness locks are of parts 0, 1, ...
#: of input segments; this is of output segments)
_WRITING = 0
#: the byte whose lock lets one worker at a time into a segment (to update counters in it)
_EXCLUSIVE = 1


class SharedMemoryUnavailable(OSError):
    """A segment cannot be created here (no room, not Linux) or mapped by a worker."""


class SegmentNotVisible(SharedMemoryUnavailable):
    """A worker cannot map the client's segment: it runs on another machine, or with another ``/dev/shm``."""


@dataclasses.dataclass(frozen=True)
class ArrayRef:
    """Where an array lives in a segment: ``shape`` items of ``dtype`` from byte ``offset``."""

    offset: int
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of the array."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def layout(specs: Sequence[tuple[np.dtype, tuple[int, ...]] | None]) -> tuple[list[ArrayRef | None], int]:
    """Consecutive aligned places in one segment for arrays of the given (dtype, shape); None stays None.

    Returns the references and the bytes they span (at least 1, the smallest segment).
    """
    refs: list[ArrayRef | None] = []
    end = 0
    for spec in specs:
        if spec is None:
            refs.append(None)
            continue
        dtype, shape = spec
        ref = ArrayRef(-(-end // ALIGN) * ALIGN, np.dtype(dtype).str, tuple(int(n) for n in shape))
        refs.append(ref)
        end = ref.offset + ref.nbytes
    return refs, max(end, 1)


class Segment:
    """A client-owned shared-memory segment of at least ``size`` bytes, reserved in full."""

    def __init__(self, size: int) -> None:
        if not SHM_DIR.is_dir():
            raise SharedMemoryUnavailable(f"no {SHM_DIR}: shared memory with workers needs Linux")
        name = f"qsim-{secrets.token_hex(8)}"
        try:
            self._shm = shared_memory.SharedMemory(name, create=True, size=size)
        except OSError as error:
            raise SharedMemoryUnavailable(f"cannot create a {size:,}-byte shared-memory segment: {error}") from error
        self._fd = -1
        try:
            self._fd = os.open(SHM_DIR / name, os.O_RDWR)  # kept: its readiness locks belong to this open file
            _reserve(self._fd, size)
        except OSError as error:
            self.unlink()
            raise SharedMemoryUnavailable(
                f"{SHM_DIR} has no room for {size:,} bytes ({error.strerror}); enlarge it or send rows in messages"
            ) from error
        self.name = name
        self.size = size

    def array(self, ref: ArrayRef) -> np.ndarray:
        """The array at ``ref`` (a view into this segment: drop it before :meth:`unlink`)."""
        return np.ndarray(ref.shape, np.dtype(ref.dtype), self._shm.buf, ref.offset)

    def hold(self, parts: int) -> None:
        """Hold parts ``0..parts-1`` (``parts`` >= 1) not ready: a worker's :func:`wait_ready` on one of them
        waits for :meth:`ready`."""
        _lock(self._fd, fcntl.F_WRLCK, 0, parts)

    def ready(self, first: int, stop: int) -> None:
        """Release parts ``first..stop-1``: their rows are in place."""
        _lock(self._fd, fcntl.F_UNLCK, first, stop - first)

    def ready_all(self) -> None:
        """Release every part held (a call that ends, however it ends, leaves no worker waiting)."""
        _lock(self._fd, fcntl.F_UNLCK, 0, 0)

    def stamp(self, ref: ArrayRef, value: int) -> None:
        """Write ``value`` into the int64 at ``ref`` once no worker is inside :func:`writing` on this segment."""
        _lock(self._fd, fcntl.F_WRLCK, _WRITING, 1)
        try:
            self.array(ref)[0] = value
        finally:
            _lock(self._fd, fcntl.F_UNLCK, _WRITING, 1)

    def unlink(self) -> None:
        """Unmap and remove the segment (workers' mappings keep their pages until they drop them)."""
        if self._fd >= 0:
            os.close(self._fd)
        self._shm.close()
        self._shm.unlink()


def _reserve(fd: int, size: int) -> None:
    """Allocate every page of the tmpfs file ``fd`` now, so that running out of room is an OSError."""
    os.posix_fallocate(fd, 0, size)


def _lock(fd: int, kind: int, first: int, count: int) -> None:
    """An open-file-description lock of ``kind`` on bytes ``first..first+count-1`` of ``fd`` (count 0: to the end),
    waiting for conflicting locks of other open files to go.

    Not ``fcntl.lockf``: its locks belong to the process, so a worker thread in the client's own process
    would share the client's locks instead of waiting for them.
    """
    # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for open-file-description locks), padding
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, struct.pack("@hhqqi4x", kind, os.SEEK_SET, first, count, 0))


class SegmentPool:
    """Segments for a client's input or output arrays, reused across calls so that their pages are touched once.

    Thread-safe: concurrent calls each hold their own segment. At most ``keep``
    idle segments are kept (the largest); :meth:`close` unlinks them all.
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._idle: list[Segment] = []
        self._lock = threading.Lock()

    def acquire(self, size: int) -> Segment:
        """An idle segment of at least ``size`` bytes, or a new one (rounded up to a power of two)."""
        with self._lock:
            fitting = [segment for segment in self._idle if segment.size >= size]
            if fitting:
                segment = min(fitting, key=lambda s: s.size)
                self._idle.remove(segment)
                return segment
        return Segment(1 << max(size - 1, 1).bit_length())

    def release(self, segment: Segment) -> None:
        """Return ``segment`` for reuse; beyond ``keep`` idle segments the smallest are unlinked."""
        with self._lock:
            self._idle.append(segment)
            self._idle.sort(key=lambda s: s.size, reverse=True)
            surplus, self._idle = self._idle[self.keep:], self._idle[:self.keep]
        for extra in surplus:
            extra.unlink()

    @property
    def names(self) -> list[str]:
        """Names of the idle segments."""
        with self._lock:
            return [segment.name for segment in self._idle]

    def close(self) -> None:
        """Unlink every idle segment."""
        with self._lock:
            idle, self._idle = self._idle, []
        for segment in idle:
            segment.unlink()


# Worker side: mappings of client segments, by name, least recently used dropped first.
_mapped: OrderedDict[str, mmap.mmap] = OrderedDict()
_mapped_lock = threading.Lock()


def attach(segment: str, ref: ArrayRef, keep: bool = True) -> np.ndarray:
    """Worker side: the array at ``ref`` in the client's segment named ``segment`` (writable, shared).

    ``keep`` keeps the mapping for later calls (segments the client reuses);
    otherwise it lasts as long as the returned array.

    Raises:
        SharedMemoryUnavailable: the segment is not visible here.
    """
    with _mapped_lock:
        mapping = _mapped.get(segment)
        if mapping is None:
            mapping = _map(segment)
            if keep:
                _mapped[segment] = mapping
                while len(_mapped) > _MAPPINGS:
                    _mapped.popitem(last=False)  # its arrays (if any are alive) keep the mapping open
        else:
            _mapped.move_to_end(segment)
    return np.ndarray(ref.shape, np.dtype(ref.dtype), mapping, ref.offset)


def wait_ready(segment: str, part: int) -> None:
    """Worker side: wait until the client has released ``part`` of ``segment`` (:meth:`Segment.ready`).

    Raises:
        SharedMemoryUnavailable: the segment is not visible here.
    """
    fd = _open(segment)  # an open file of its own: the lock is this wait's, whatever other threads hold
    try:
        _lock(fd, fcntl.F_RDLCK, part, 1)
    finally:
        os.close(fd)  # which also drops the lock


@contextlib.contextmanager
def writing(segment: str, stamp: ArrayRef, value: int, *, exclusive: bool = False) -> Iterator[bool]:
    """Worker side: whether ``segment`` still bears the stamp ``value`` at ``stamp`` (its call is still on);
    :meth:`Segment.stamp` waits until the block ends, so write in it. ``exclusive``: no other worker is in
    an exclusive block of the segment meanwhile (for read-modify-write of shared counters).

    Raises:
        SharedMemoryUnavailable: the segment is not visible here.
    """
    fd = _open(segment)
    try:
        _lock(fd, fcntl.F_RDLCK, _WRITING, 1)
        if exclusive:
            _lock(fd, fcntl.F_WRLCK, _EXCLUSIVE, 1)
        yield int(attach(segment, stamp)[0]) == value
    finally:
        os.close(fd)  # which also drops the lock


def _open(segment: str) -> int:
    try:
        return os.open(SHM_DIR / segment, os.O_RDWR)
    except OSError as error:
        raise SegmentNotVisible(f"shared-memory segment {segment} is not visible on this worker "
                                f"({error.strerror})") from error


def _map(segment: str) -> mmap.mmap:
    fd = _open(segment)
    try:
        return mmap.mmap(fd, 0)
    finally:
        os.close(fd)


def forget(names: Iterable[str]) -> None:
    """Worker side: drop the mappings of these segments (the client unlinked them or is closing)."""
    with _mapped_lock:
        for name in names:
            _mapped.pop(name, None)


def token_segment(token: bytes) -> Segment:
    """Client side: a new segment holding ``token``, for workers to check with :func:`visible` (unlink it after)."""
    segment = Segment(len(token))
    view = segment.array(_token_ref(token))
    view[:] = np.frombuffer(token, np.uint8)
    return segment


def visible(segment: str, token: bytes) -> bool:
    """Worker side: whether ``segment`` can be mapped here and starts with ``token``."""
    try:
        return attach(segment, _token_ref(token), keep=False).tobytes() == token
    except SegmentNotVisible:
        return False


def _token_ref(token: bytes) -> ArrayRef:
    return ArrayRef(0, "|u1", (len(token),))


__all__ = ["ArrayRef", "Segment", "SegmentNotVisible", "SegmentPool", "SharedMemoryUnavailable", "attach", "forget",
           "layout", "token_segment", "visible", "wait_ready", "writing"]
