"""The journal's only door to the file system: a small object tests can rewire.

Layout
------
``FileOps`` wraps the handful of ``os`` calls the journal and snapshots make: open, write
(all bytes, looping over short writes), fsync, fsync of a directory, rename, truncate,
remove, read. Fault tests replace one method on an instance (``ops.write = raise_enospc``)
and the real files are still used for everything else.

Invariants
----------
* Every path that must survive a crash is made durable by ``fsync`` of the file *and* of
  the directory that names it (after a create, a rename or a remove).

Known limitations
-----------------
* Linux/POSIX semantics (``O_DIRECTORY``, directory fsync). Power-loss guarantees are those
  of the file system's fsync; the tests can only exercise process crashes (SIGKILL).
"""

from __future__ import annotations

import os


class FileOps:
    """Real file operations. Subclass, or assign to an instance's attributes, to inject faults."""

    def open_append(self, path: str) -> int:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def open_new(self, path: str) -> int:
        """A new file for writing; an existing one is truncated."""
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

    def write(self, fd: int, data) -> None:
        """Write every byte of ``data`` (a bytes-like object), looping over short writes."""
        view = memoryview(data).cast("B")
        while len(view):
            n = os.write(fd, view)
            view = view[n:]

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def truncate(self, path: str, size: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, path: str) -> None:
        os.remove(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def read_into(self, path: str) -> bytearray:
        """The whole file in one writable buffer (numpy arrays can then view it in place)."""
        size = os.path.getsize(path)
        buf = bytearray(size)
        with open(path, "rb", buffering=0) as f:
            view = memoryview(buf)
            got = 0
            while got < size:
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
        return buf if got == size else buf[:got]

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write a small file atomically: temp file, fsync, rename, fsync of the directory."""
        tmp = path + ".tmp"
        fd = self.open_new(tmp)
        try:
            self.write(fd, data)
            self.fsync(fd)
        finally:
            self.close(fd)
        self.replace(tmp, path)
        self.fsync_dir(os.path.dirname(os.path.abspath(path)))
