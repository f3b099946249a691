"""Trace files: finding them, checking their headers, streaming their records.

A run is described by one trace file per peer incarnation (TRC-001), usually
collected in one directory under the names of TRC-011. :func:`open_run` reads
only the header of each file; :meth:`Run.records` streams one file's records
with a bounded cost per record, so a trace of any length is read in bounded
memory. Damage never raises: a file that cannot be opened, ends inside a record
(TRC-012), holds bytes that are not a record, breaks the header rules (TRC-002)
or was written by a newer protocol major version is reported as a
:class:`~refrpc_trace.Problem`, and every usable record is still used.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Sequence

from refrpc.codec import TraceFormatError, TraceKind, TraceRecord, read_trace
from refrpc.core.messages import PROTOCOL_MAJOR, PROTOCOL_MINOR

from ._findings import Diagnostics, Evidence, Finding, Kind, Severity

#: The file name suffix of TRC-011.
SUFFIX = ".rrtrace"


@dataclass(slots=True)
class TraceFile:
    """One peer incarnation's trace, as its header describes it."""

    path: Path
    #: File size in bytes when opened (for progress reports).
    size: int
    peer: str
    incarnation: int
    protocol_major: int
    protocol_minor: int
    implementation: str
    #: The header's ``monotonicNs``.
    start_ns: int
    #: False when the header was missing and the first record stands in for it.
    has_header: bool = True
    #: Name shown for this incarnation (set by :class:`Run`).
    label: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return (self.peer, self.incarnation)


class Progress:
    """Reports reading progress on a stream (stderr) for large inputs.

    Silent unless enabled; :func:`Progress.auto` enables it for inputs of at
    least ``threshold`` bytes. At most one line per ``interval_s``.
    """

    def __init__(self, total_bytes: int, *, enabled: bool, stream: IO[str] | None = None, interval_s: float = 1.0) -> None:
        self.total = max(1, total_bytes)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = interval_s
        self.records = 0
        self.bytes = 0
        self.label = "reading"
        self._last = time.monotonic()
        self.lines = 0

    @classmethod
    def auto(cls, total_bytes: int, threshold: int = 32 * 1024 * 1024, **kw: object) -> "Progress":
        return cls(total_bytes, enabled=total_bytes >= threshold, **kw)  # type: ignore[arg-type]

    def advance(self, records: int, nbytes: int) -> None:
        self.records += records
        self.bytes += nbytes
        if self.enabled and self.records % 4096 == 0:
            now = time.monotonic()
            if now - self._last >= self.interval_s:
                self._last = now
                self.report()

    def report(self, final: bool = False) -> None:
        if not self.enabled:
            return
        pct = min(100.0, 100.0 * self.bytes / self.total)
        word = "read" if final else self.label
        print(f"refrpc-trace: {word} {self.records:,} records ({pct:.0f}% of {self.total / 1e6:,.1f} MB)",
              file=self.stream, flush=True)
        self.lines += 1


class _CountingReader:
    """A binary file wrapper that counts the bytes read (for progress)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.count += len(data)
        return data


def discover(paths: Sequence[str | os.PathLike[str]], diag: Diagnostics) -> list[Path]:
    """The trace files named by ``paths``: files as given, directories' ``*.rrtrace``."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(q for q in p.iterdir() if q.name.endswith(SUFFIX) and q.is_file())
            if not inside:
                diag.problem(Severity.ERROR, f"no *{SUFFIX} files in this directory", str(p))
            found.extend(inside)
        elif p.exists():
            found.append(p)
        else:
            diag.problem(Severity.ERROR, "no such file or directory", str(p))
    return found


def _read_header(path: Path, diag: Diagnostics) -> TraceFile | None:
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            first = next(read_trace(f), None)
    except OSError as exc:
        diag.problem(Severity.ERROR, f"cannot read: {exc.strerror or exc}", str(path))
        return None
    except TraceFormatError as exc:
        if exc.truncated:
            diag.problem(Severity.WARNING, "the file ends inside its first record: nothing to read", str(path), "TRC-012")
        else:
            diag.problem(Severity.ERROR, f"not a trace file: {exc}", str(path), "TRC-001")
        return None
    if first is None:
        diag.problem(Severity.WARNING, "empty trace file, skipped", str(path))
        return None
    if first.kind is not TraceKind.HEADER or first.record_no != 0:
        diag.problem(Severity.WARNING, f"the first record is a {first.kind.value} record #{first.record_no}, "
                     "not the header: its peer and incarnation stand in for it", str(path), "TRC-002")
        return TraceFile(path, size, first.peer, first.incarnation, PROTOCOL_MAJOR, PROTOCOL_MINOR,
                         "unknown", first.monotonic_ns, has_header=False)
    return TraceFile(path, size, first.peer, first.incarnation, first.protocol_major, first.protocol_minor,
                     first.implementation, first.monotonic_ns)


class Run:
    """The trace files of one run, one per peer incarnation.

    Attributes:
        files: The usable files, ordered by PeerId and incarnation.
        diag: Where reading problems and trace-format findings go.
    """

    def __init__(self, files: list[TraceFile], diag: Diagnostics) -> None:
        self.files = sorted(files, key=lambda f: (f.peer, f.incarnation))
        self.diag = diag
        self.by_key = {f.key: f for f in self.files}
        per_peer: dict[str, int] = {}
        for f in self.files:
            per_peer[f.peer] = per_peer.get(f.peer, 0) + 1
        for f in self.files:
            f.label = f.peer if per_peer[f.peer] == 1 else f"{f.peer}~{f.incarnation:x}"[: len(f.peer) + 5]
        self._labels = {f.key: f.label for f in self.files}
        self.peers = set(per_peer)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def label(self, peer: str, incarnation: int = 0) -> str:
        """The display name of a peer incarnation (its PeerId when it has one trace)."""
        got = self._labels.get((peer, incarnation))
        if got is not None:
            return got
        if incarnation == 0:
            return peer
        return f"{peer}~{incarnation:x}"[: len(peer) + 5] if peer in self.peers else peer

    def records(self, tf: TraceFile, progress: Progress | None = None) -> Iterator[TraceRecord]:
        """The records of ``tf`` after its header, checked against TRC-001/002/004.

        Damage ends the iteration with a problem recorded; nothing is raised.
        """
        diag = self.diag
        path = str(tf.path)
        expected_no = 1 if tf.has_header else None
        last_ns = tf.start_ns
        try:
            f = tf.path.open("rb")
        except OSError as exc:
            diag.problem(Severity.ERROR, f"cannot read: {exc.strerror or exc}", path)
            return
        counting = _CountingReader(f)
        seen = 0
        with f:
            stream = read_trace(counting)
            try:
                if tf.has_header:
                    next(stream, None)  # the header, read by open_run
                for rec in stream:
                    seen += 1
                    if progress is not None:
                        progress.advance(1, counting.count)
                        counting.count = 0
                    if expected_no is not None and rec.record_no != expected_no:
                        self._format(tf, "TRC-004", f"record number {rec.record_no} where {expected_no} was due"
                                     f" ({'records are missing' if rec.record_no > expected_no else 'numbers go back'})",
                                     rec)
                    expected_no = rec.record_no + 1
                    if rec.monotonic_ns < last_ns:
                        self._format(tf, "TRC-004", f"monotonicNs goes back by {last_ns - rec.monotonic_ns} ns", rec)
                    last_ns = max(last_ns, rec.monotonic_ns)
                    if rec.kind is TraceKind.HEADER:
                        self._format(tf, "TRC-002", "a second header record; ignored", rec)
                        continue
                    if rec.peer != tf.peer or rec.incarnation != tf.incarnation:
                        self._format(tf, "TRC-001", f"a record of {rec.peer}/{rec.incarnation:x} in the trace of "
                                     f"{tf.peer}/{tf.incarnation:x}; ignored", rec)
                        continue
                    yield rec
            except TraceFormatError as exc:
                n = exc.records_read
                if exc.truncated:
                    diag.problem(Severity.NOTE, f"ends inside record {n} (the writer stopped while writing it); "
                                 f"the {n} complete records before it are used", path, "TRC-012")
                else:
                    diag.problem(Severity.WARNING, f"corrupt at byte {exc.offset} (record {n}): {exc}; "
                                 f"the {n} records before it are used, the rest of the file is skipped", path,
                                 "TRC-001")
            except OSError as exc:
                diag.problem(Severity.WARNING, f"read error after {seen} records: {exc.strerror or exc}; "
                             "the rest of the file is skipped", path)
        if progress is not None:
            progress.advance(0, counting.count)

    def _format(self, tf: TraceFile, requirement: str, text: str, rec: TraceRecord) -> None:
        ev = Evidence(-1, 0.0, tf.label, f"record {rec.record_no} of {tf.path.name}: {rec.kind.value}")
        self.diag.finding(Finding(requirement, Kind.TRACE_FORMAT, f"{tf.label}: {text}", (ev,)), group=str(tf.path))


def open_run(paths: Sequence[str | os.PathLike[str]], diag: Diagnostics | None = None) -> Run:
    """Open the traces named by ``paths`` (files or directories); reads headers only.

    Files that cannot be used are left out with a problem in ``diag``: unreadable,
    empty, not a trace, or written by a protocol major version this inspector
    does not read. Two files of the same peer incarnation: the larger is used.
    """
    diag = diag if diag is not None else Diagnostics()
    files: dict[tuple[str, int], TraceFile] = {}
    for path in discover(paths, diag):
        tf = _read_header(path, diag)
        if tf is None:
            continue
        if tf.protocol_major != PROTOCOL_MAJOR:
            diag.problem(Severity.ERROR, f"written by {tf.implementation or 'an unknown implementation'} for protocol "
                         f"{tf.protocol_major}.{tf.protocol_minor}; this inspector reads protocol {PROTOCOL_MAJOR}.x "
                         "(a different major version cannot be decoded), so this peer's trace is left out", str(path))
            continue
        if tf.protocol_minor > PROTOCOL_MINOR:
            diag.problem(Severity.NOTE, f"written for protocol {tf.protocol_major}.{tf.protocol_minor}, newer than "
                         f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}: messages this inspector does not know are shown as "
                         "unknown", str(path))
        other = files.get(tf.key)
        if other is not None:
            keep, drop = (tf, other) if tf.size > other.size else (other, tf)
            diag.problem(Severity.WARNING, f"a second trace of {tf.peer}/{tf.incarnation:x} (also in "
                         f"{keep.path}); only the larger file is used", str(drop.path))
            files[tf.key] = keep
        else:
            files[tf.key] = tf
    return Run(list(files.values()), diag)
