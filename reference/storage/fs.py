"""The file-system interface that everything durable in the store goes through.

Why: the WAL and the snapshot files must behave the same on a real disk and on the
simulated disk of the deterministic simulation, where a crash loses what was not fsynced.
So they never touch ``os`` directly; they take a ``FileSystem``.

How: ``FileSystem`` is a small Protocol (append-only writable files, whole or ranged reads,
rename, remove, list, directory fsync, size, truncate). Paths are relative POSIX-style
strings ("wal/0000000000000001.wal") resolved under the file system's root; absolute paths
and ".." are refused, so a node's storage cannot escape its data directory.

Two implementations:

- ``OsFileSystem(root)``: the real OS. ``sync`` is ``fdatasync`` (enough for appends: it
  persists the file size too), ``sync_dir`` fsyncs the directory, ``rename`` is
  ``os.replace`` (atomic), ``makedirs`` fsyncs each parent it adds an entry to.
- ``MemoryFileSystem()``: an in-memory model of a disk behind a page cache. Each file has
  the bytes readers see now and the bytes that are durable (as of its last ``sync``); each
  directory has its entries now and its durable entries (as of its last ``sync_dir``).
  Creating, renaming and removing a file change only the current entries until the
  directory is synced; writes and truncates change only the current bytes until the file is
  synced. ``crash(rng)`` drops everything volatile and, with probability
  ``tear_probability``, keeps a random strict prefix of each file's last unsynced write
  (a torn write). As in a page cache, appends that follow each other since the last sync
  (or truncate) form one dirty extent, so "the last unsynced write" of an append-only file
  is everything appended since its last sync. All randomness comes from the
  ``random.Random`` passed in, and files are visited in sorted path order, so a crash is
  deterministic for a given seed.
  Simplifications (documented, deliberate): directories are durable as soon as they are
  created (``OsFileSystem.makedirs`` fsyncs parents so it matches); a torn write never
  leaves a hole (it is kept only if it starts within the durable bytes); unsynced writes
  are never kept whole.

``CrashPointFileSystem`` wraps either and stops at a chosen operation, so tests can crash
an action (a snapshot save, a segment cut) at every step in turn.

Errors are the OS's own exception types in both implementations (FileNotFoundError,
FileExistsError, IsADirectoryError, NotADirectoryError, ValueError for bad paths), so
callers handle one set of errors.
"""

from __future__ import annotations

import os
import posixpath
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = [
    "AppendFile",
    "CrashPointFileSystem",
    "FileSystem",
    "InjectedCrash",
    "MemoryFileSystem",
    "OsFileSystem",
    "StaleHandleError",
    "normalize_path",
]


def normalize_path(path: str) -> str:
    """The canonical relative form of ``path``; "" or "." is the root.

    Raises ValueError for absolute paths and paths that leave the root with "..".
    """
    if not isinstance(path, str):
        raise ValueError(f"path must be a str, got {type(path).__name__}")
    if path.startswith("/"):
        raise ValueError(f"path {path!r} is absolute; paths are relative to the file system root")
    norm = posixpath.normpath(path) if path else "."
    if norm == ".." or norm.startswith("../"):
        raise ValueError(f"path {path!r} leaves the file system root")
    return "" if norm == "." else norm


@runtime_checkable
class AppendFile(Protocol):
    """A file open for appending. Writes land at the end; nothing is durable before sync()."""

    @property
    def path(self) -> str:
        """The (normalized) path the file was opened under."""
        ...

    def write(self, data: bytes) -> None:
        """Append all of ``data`` (volatile until sync())."""
        ...

    def sync(self) -> None:
        """fsync: make the file's bytes and size durable. Not its directory entry."""
        ...

    def size(self) -> int:
        """The current size in bytes, unsynced writes included."""
        ...

    def truncate(self, size: int) -> None:
        """Cut the file to ``size`` bytes (volatile until sync()); later writes append there."""
        ...

    def close(self) -> None:
        """Release the handle. Does not sync."""
        ...


@runtime_checkable
class FileSystem(Protocol):
    """Everything durable goes through this. See the module docstring for the semantics."""

    def open_append(self, path: str, *, create: bool = True) -> AppendFile:
        """Open ``path`` for appending, creating it (empty) when missing and ``create``.

        Creation is a directory change: durable only after ``sync_dir`` of its parent.
        """
        ...

    def read_bytes(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read ``length`` bytes (all when None) from ``offset``; shorter at end of file."""
        ...

    def size(self, path: str) -> int:
        """The file's current size in bytes."""
        ...

    def exists(self, path: str) -> bool:
        """Whether a file or directory exists at ``path`` now."""
        ...

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` is an existing directory."""
        ...

    def listdir(self, path: str) -> list[str]:
        """The names in directory ``path``, sorted."""
        ...

    def makedirs(self, path: str) -> None:
        """Create directory ``path`` and missing parents, durably; no error if it exists."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Atomically rename a file, replacing ``dst``. Durable after ``sync_dir`` of both parents."""
        ...

    def remove(self, path: str) -> None:
        """Remove a file. Durable after ``sync_dir`` of its parent."""
        ...

    def sync_dir(self, path: str) -> None:
        """fsync a directory: make its entries (creates, renames, removes) durable."""
        ...


class StaleHandleError(OSError):
    """A MemoryFileSystem handle was used after the file system crashed."""


# --------------------------------------------------------------------------------------
# The real OS


class _OsAppendFile:
    def __init__(self, path: str, fd: int) -> None:
        self._path = path
        self._fd: int | None = fd

    @property
    def path(self) -> str:
        return self._path

    def _check(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self._path}: file is closed")
        return self._fd

    def write(self, data: bytes) -> None:
        fd = self._check()
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def sync(self) -> None:
        fd = self._check()
        if hasattr(os, "fdatasync"):
            os.fdatasync(fd)
        else:  # pragma: no cover - macOS
            os.fsync(fd)

    def size(self) -> int:
        return os.fstat(self._check()).st_size

    def truncate(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"{self._path}: negative truncate size {size}")
        os.ftruncate(self._check(), size)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class OsFileSystem:
    """The real file system, rooted at ``root`` (which must exist)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"file system root {str(self.root)!r} is not a directory")

    def __repr__(self) -> str:
        return f"OsFileSystem({str(self.root)!r})"

    def _abs(self, path: str) -> str:
        rel = normalize_path(path)
        return str(self.root / rel) if rel else str(self.root)

    def open_append(self, path: str, *, create: bool = True) -> AppendFile:
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0)
        fd = os.open(self._abs(path), flags, 0o644)
        return _OsAppendFile(normalize_path(path), fd)

    def read_bytes(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        with open(self._abs(path), "rb") as f:
            f.seek(offset)
            return f.read() if length is None else f.read(length)

    def size(self, path: str) -> int:
        return os.stat(self._abs(path)).st_size

    def exists(self, path: str) -> bool:
        return os.path.exists(self._abs(path))

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(self._abs(path))

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(self._abs(path)))

    def makedirs(self, path: str) -> None:
        rel = normalize_path(path)
        if not rel:
            return
        current = ""
        for part in rel.split("/"):
            parent = current
            current = f"{current}/{part}" if current else part
            target = self._abs(current)
            if os.path.isdir(target):
                continue
            os.mkdir(target)
            self.sync_dir(parent)

    def rename(self, src: str, dst: str) -> None:
        if os.path.isdir(self._abs(src)):
            raise IsADirectoryError(f"{src}: rename of directories is not supported")
        os.replace(self._abs(src), self._abs(dst))

    def remove(self, path: str) -> None:
        os.remove(self._abs(path))

    def sync_dir(self, path: str) -> None:
        fd = os.open(self._abs(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------
# In memory, with a page cache that a crash empties


@dataclass
class _Write:
    """A dirty extent: the bytes written at ``offset`` since the last sync (appends merge)."""

    offset: int
    data: bytearray


@dataclass
class _Inode:
    data: bytearray = field(default_factory=bytearray)  # what reads see now
    durable: bytearray = field(default_factory=bytearray)  # the bytes as of the last sync
    last_unsynced_write: _Write | None = None  # candidate for a torn write on crash
    dirty: bool = False  # anything (write or truncate) since the last sync
    # ``data`` still starts with ``durable`` (no truncate below it since the last sync), so
    # a sync only needs to copy the new tail: syncing a growing file costs what was added.
    extends_durable: bool = True


@dataclass
class _Dir:
    entries: dict[str, _Inode | _Dir] = field(default_factory=dict)  # now
    durable: dict[str, _Inode | _Dir] = field(default_factory=dict)  # as of last sync_dir


class _MemoryAppendFile:
    def __init__(self, fs: MemoryFileSystem, path: str, inode: _Inode) -> None:
        self._fs = fs
        self._path = path
        self._inode = inode
        self._generation = fs.generation
        self._closed = False

    @property
    def path(self) -> str:
        return self._path

    def _check(self) -> _Inode:
        if self._closed:
            raise ValueError(f"{self._path}: file is closed")
        if self._generation != self._fs.generation:
            raise StaleHandleError(f"{self._path}: handle opened before a crash")
        return self._inode

    def write(self, data: bytes) -> None:
        inode = self._check()
        if not data:
            return
        offset = len(inode.data)
        inode.data += data
        last = inode.last_unsynced_write
        if last is not None and last.offset + len(last.data) == offset:
            last.data += data  # an append right after the last one extends the same extent
        else:
            inode.last_unsynced_write = _Write(offset, bytearray(data))
        inode.dirty = True
        self._fs.stats["writes"] += 1
        self._fs.stats["bytes_written"] += len(data)

    def sync(self) -> None:
        inode = self._check()
        if inode.dirty:
            if inode.extends_durable:
                inode.durable += inode.data[len(inode.durable) :]
            else:
                inode.durable = bytearray(inode.data)
            inode.extends_durable = True
            inode.dirty = False
            inode.last_unsynced_write = None
        self._fs.stats["syncs"] += 1

    def size(self) -> int:
        return len(self._check().data)

    def truncate(self, size: int) -> None:
        inode = self._check()
        if size < 0:
            raise ValueError(f"{self._path}: negative truncate size {size}")
        if size < len(inode.data):
            del inode.data[size:]
        else:
            inode.data += bytes(size - len(inode.data))
        if size < len(inode.durable):
            inode.extends_durable = False
        inode.dirty = True
        # A write before the truncate no longer describes the file's tail.
        inode.last_unsynced_write = None

    def close(self) -> None:
        self._closed = True


class MemoryFileSystem:
    """An in-memory disk behind a page cache; ``crash(rng)`` loses what was not fsynced."""

    def __init__(self) -> None:
        self._root = _Dir()
        self.generation = 0  # bumped by crash(); handles from older generations are stale
        self.stats: dict[str, int] = {"writes": 0, "bytes_written": 0, "syncs": 0, "dir_syncs": 0}

    def __repr__(self) -> str:
        return f"MemoryFileSystem(generation={self.generation})"

    # -- lookup ----------------------------------------------------------------------

    def _lookup(self, path: str) -> _Inode | _Dir:
        rel = normalize_path(path)
        node: _Inode | _Dir = self._root
        if not rel:
            return node
        walked: list[str] = []
        for part in rel.split("/"):
            if not isinstance(node, _Dir):
                raise NotADirectoryError(f"{'/'.join(walked)}: not a directory")
            walked.append(part)
            try:
                node = node.entries[part]
            except KeyError:
                raise FileNotFoundError(f"{'/'.join(walked)}: no such file or directory") from None
        return node

    def _parent(self, path: str) -> tuple[_Dir, str]:
        rel = normalize_path(path)
        if not rel:
            raise ValueError("the root is not a file")
        parent_path, _, name = rel.rpartition("/")
        parent = self._lookup(parent_path)
        if not isinstance(parent, _Dir):
            raise NotADirectoryError(f"{parent_path}: not a directory")
        return parent, name

    def _file(self, path: str) -> _Inode:
        node = self._lookup(path)
        if isinstance(node, _Dir):
            raise IsADirectoryError(f"{normalize_path(path) or '.'}: is a directory")
        return node

    # -- the FileSystem protocol -----------------------------------------------------

    def open_append(self, path: str, *, create: bool = True) -> AppendFile:
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            if not create:
                raise FileNotFoundError(f"{normalize_path(path)}: no such file or directory")
            node = _Inode()
            parent.entries[name] = node
        if isinstance(node, _Dir):
            raise IsADirectoryError(f"{normalize_path(path)}: is a directory")
        return _MemoryAppendFile(self, normalize_path(path), node)

    def read_bytes(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self._file(path).data
        end = len(data) if length is None else offset + length
        return bytes(data[offset:end])

    def size(self, path: str) -> int:
        return len(self._file(path).data)

    def exists(self, path: str) -> bool:
        try:
            self._lookup(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def is_dir(self, path: str) -> bool:
        try:
            return isinstance(self._lookup(path), _Dir)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def listdir(self, path: str) -> list[str]:
        node = self._lookup(path)
        if not isinstance(node, _Dir):
            raise NotADirectoryError(f"{normalize_path(path)}: not a directory")
        return sorted(node.entries)

    def makedirs(self, path: str) -> None:
        rel = normalize_path(path)
        if not rel:
            return
        node = self._root
        walked: list[str] = []
        for part in rel.split("/"):
            walked.append(part)
            child = node.entries.get(part)
            if child is None:
                child = _Dir()
                # Simplification: a new directory is durable at once (see module docstring).
                node.entries[part] = child
                node.durable[part] = child
            if not isinstance(child, _Dir):
                raise FileExistsError(f"{'/'.join(walked)}: exists and is not a directory")
            node = child

    def rename(self, src: str, dst: str) -> None:
        src_parent, src_name = self._parent(src)
        node = src_parent.entries.get(src_name)
        if node is None:
            raise FileNotFoundError(f"{normalize_path(src)}: no such file or directory")
        if isinstance(node, _Dir):
            raise IsADirectoryError(f"{normalize_path(src)}: rename of directories is not supported")
        dst_parent, dst_name = self._parent(dst)
        if isinstance(dst_parent.entries.get(dst_name), _Dir):
            raise IsADirectoryError(f"{normalize_path(dst)}: is a directory")
        del src_parent.entries[src_name]
        dst_parent.entries[dst_name] = node

    def remove(self, path: str) -> None:
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            raise FileNotFoundError(f"{normalize_path(path)}: no such file or directory")
        if isinstance(node, _Dir):
            raise IsADirectoryError(f"{normalize_path(path)}: is a directory")
        del parent.entries[name]

    def sync_dir(self, path: str) -> None:
        node = self._lookup(path)
        if not isinstance(node, _Dir):
            raise NotADirectoryError(f"{normalize_path(path)}: not a directory")
        node.durable = dict(node.entries)
        self.stats["dir_syncs"] += 1

    # -- crash -------------------------------------------------------------------------

    def crash(self, rng: random.Random, *, tear_probability: float = 0.5) -> list[str]:
        """Lose everything not made durable, as a power failure would.

        Directory entries go back to their state at the last ``sync_dir``; each file still
        reachable goes back to its bytes at its last ``sync``. Then, for each file whose last
        unsynced operation was a write (visited in sorted path order), with probability
        ``tear_probability`` a random strict prefix of that write survives at its offset
        (only if the write starts within the durable bytes, so no hole appears). Open handles
        become stale. Returns the paths of the files that got a torn write, for logs.
        """
        if not 0.0 <= tear_probability <= 1.0:
            raise ValueError(f"tear_probability must be in [0, 1], got {tear_probability}")
        self.generation += 1
        torn: list[str] = []
        seen: dict[int, _Inode] = {}  # keyed by id, never iterated: only membership tests

        def visit(directory: _Dir, prefix: str) -> None:
            directory.entries = dict(directory.durable)
            for name in sorted(directory.entries):
                node = directory.entries[name]
                path = f"{prefix}{name}"
                if isinstance(node, _Dir):
                    visit(node, path + "/")
                    continue
                if id(node) in seen:  # a second durable name for one inode
                    continue
                seen[id(node)] = node
                write = node.last_unsynced_write if node.dirty else None
                content = bytearray(node.durable)
                if (
                    write is not None
                    and len(write.data) >= 2
                    and write.offset <= len(content)
                    and rng.random() < tear_probability
                ):
                    keep = rng.randint(1, len(write.data) - 1)
                    content[write.offset : write.offset + keep] = write.data[:keep]
                    torn.append(path)
                node.durable = content
                node.data = bytearray(content)
                node.dirty = False
                node.extends_durable = True
                node.last_unsynced_write = None

        visit(self._root, "")
        return torn

    # -- inspection for tests and the simulation -------------------------------------------

    def durable_bytes(self, path: str) -> bytes:
        """The file's bytes as of its last sync (what a crash without tearing would leave)."""
        return bytes(self._file(path).durable)

    def dirty_files(self) -> list[str]:
        """Paths (sorted) of the files with writes or truncates not yet synced."""
        dirty: list[str] = []

        def visit(directory: _Dir, prefix: str) -> None:
            for name in sorted(directory.entries):
                node = directory.entries[name]
                if isinstance(node, _Dir):
                    visit(node, f"{prefix}{name}/")
                elif node.dirty:
                    dirty.append(f"{prefix}{name}")

        visit(self._root, "")
        return dirty


# --------------------------------------------------------------------------------------
# Crash points: stop a sequence of file-system operations at a chosen step


class InjectedCrash(OSError):
    """Raised by ``CrashPointFileSystem`` at its chosen operation, which is not performed."""


class _CrashPointAppendFile:
    def __init__(self, fs: CrashPointFileSystem, inner: AppendFile) -> None:
        self._fs = fs
        self._inner = inner

    @property
    def path(self) -> str:
        return self._inner.path

    def write(self, data: bytes) -> None:
        self._fs._step(f"write {self.path} ({len(data)} bytes)")
        self._inner.write(data)

    def sync(self) -> None:
        self._fs._step(f"sync {self.path}")
        self._inner.sync()

    def size(self) -> int:
        return self._inner.size()

    def truncate(self, size: int) -> None:
        self._fs._step(f"truncate {self.path} to {size}")
        self._inner.truncate(size)

    def close(self) -> None:
        self._inner.close()


class CrashPointFileSystem:
    """Wraps a FileSystem and raises ``InjectedCrash`` instead of its ``crash_at``-th change.

    Changes are counted from 0: open_append (a possible create), write, sync, truncate,
    rename, remove, sync_dir, makedirs. Reads pass through. With ``crash_at`` None nothing
    is injected and ``steps`` records every change, so a test can first count the steps of
    an action and then crash at each one in turn (then ``crash`` the inner in-memory disk
    and recover). After the injected crash every further change raises too.
    """

    def __init__(self, inner: FileSystem, crash_at: int | None = None) -> None:
        self.inner = inner
        self.crash_at = crash_at
        self.steps: list[str] = []
        self.crashed = False

    def _step(self, what: str) -> None:
        if self.crashed or (self.crash_at is not None and len(self.steps) >= self.crash_at):
            self.crashed = True
            raise InjectedCrash(f"injected crash before step {len(self.steps)}: {what}")
        self.steps.append(what)

    def open_append(self, path: str, *, create: bool = True) -> AppendFile:
        self._step(f"open_append {path}")
        return _CrashPointAppendFile(self, self.inner.open_append(path, create=create))

    def read_bytes(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        return self.inner.read_bytes(path, offset, length)

    def size(self, path: str) -> int:
        return self.inner.size(path)

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def is_dir(self, path: str) -> bool:
        return self.inner.is_dir(path)

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)

    def makedirs(self, path: str) -> None:
        self._step(f"makedirs {path}")
        self.inner.makedirs(path)

    def rename(self, src: str, dst: str) -> None:
        self._step(f"rename {src} -> {dst}")
        self.inner.rename(src, dst)

    def remove(self, path: str) -> None:
        self._step(f"remove {path}")
        self.inner.remove(path)

    def sync_dir(self, path: str) -> None:
        self._step(f"sync_dir {path}")
        self.inner.sync_dir(path)
