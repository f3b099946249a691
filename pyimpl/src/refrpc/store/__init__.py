"""Object stores: where the stored values of a peer live (spec ``OBJ-010``, ``FET-*``).

A store keeps each object in its *stored form*: the bytes of one Cap'n Proto
message whose root is the ``Value``, every payload inline
(:func:`refrpc.codec.encode_value`). The length of those bytes is the object's
size (OBJ-011) and they are what ``FetchChunk``\\ s carry, so a store can serve
a fetch straight from them (:meth:`ObjectStore.get_bytes`) and assemble a
fetched copy chunk by chunk (:meth:`~ObjectStore.put_bytes`,
:meth:`~ObjectStore.write_chunk`, :meth:`~ObjectStore.seal`).

Two implementations:

* :class:`MemoryStore`: the process's own memory.
* :class:`SharedMemoryStore`: one POSIX shared-memory segment per object
  (a file under ``/dev/shm``, recycled for later objects once nobody maps it,
  within a byte limit, spilling to disk past it), so that another process on the same host can
  :meth:`~SharedMemoryStore.attach` the value: it maps the segment read-only
  and gets ``memoryview``\\ s of the mapping, so numpy arrays in the value are
  used in place, never copied (DESIGN section 7). Values are immutable: the
  segment is read-only once sealed and every reader maps it read-only.

Objects are immutable once sealed: there is no update, only :meth:`free`.
Stores are thread-safe.
"""

from ._base import (
    CorruptObject,
    IncompleteObject,
    ObjectExists,
    ObjectNotFound,
    ObjectStore,
    StoreClosed,
    StoreError,
    StoreFull,
    clip_range,
)
from ._limits import (
    DEFAULT_HIGH_WATER,
    default_capacity,
    default_spill_directory,
    parse_bytes,
    parse_high_water,
    prepare_spill_directory,
)
from ._memory import MemoryStore
from ._shm import (
    DEFAULT_DIRECTORY,
    SharedMemoryStore,
    cleanup_namespace,
    cleanup_spill,
    cleanup_writer,
    list_segments,
    list_spilled,
    segment_name,
    sweep_orphans,
)

__all__ = [
    "DEFAULT_DIRECTORY",
    "DEFAULT_HIGH_WATER",
    "CorruptObject",
    "IncompleteObject",
    "MemoryStore",
    "ObjectExists",
    "ObjectNotFound",
    "ObjectStore",
    "SharedMemoryStore",
    "StoreClosed",
    "StoreError",
    "StoreFull",
    "cleanup_namespace",
    "default_capacity",
    "default_spill_directory",
    "parse_bytes",
    "parse_high_water",
    "prepare_spill_directory",
    "cleanup_spill",
    "clip_range",
    "list_segments",
    "list_spilled",
    "cleanup_writer",
    "sweep_orphans",
    "segment_name",
]
