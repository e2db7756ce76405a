"""The lock of a run folder: one training (or sweep) process at a time, and never a write
through a file that is not tinymod's own."""
import errno
import os
import stat
from pathlib import Path

from tinymod.errors import TinymodError
from tinymod.training.runs import KINDS, LOCK, link_refused


class RunLock:
    """An exclusive lock on a run folder for one training process (flock on `.lock`).

    The kernel releases a flock when its process dies, so the lock of a dead process is
    simply taken over. The file holds the owner's pid and command line, for the message a
    second training gets. An analysis writing into the run's own folder holds it too
    (doing="analysed"), so no training replaces the model it reads."""

    def __init__(self, folder, doing="trained"):
        self.path = Path(folder) / LOCK
        self.fd, self.doing = None, doing

    def acquire(self):
        import fcntl
        import sys
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise link_refused(self.path) from None
            if e.errno == errno.EISDIR:
                raise TinymodError(f"{self.path} is a folder, not tinymod's own lock: remove it") from None
            raise TinymodError(f"cannot write to {self.path.parent}: {e.strerror or e}") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)          # never written: another name for the same file may be anyone's
            what = KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file") if not stat.S_ISREG(info.st_mode) \
                else f"a file with {info.st_nlink} names (a hard link)"
            raise TinymodError(f"{self.path} is {what}, not tinymod's own lock; tinymod writes its "
                               f"process line only into a lock it alone names: remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise TinymodError(f"{self.path.parent} is in use by {owner}; it cannot be {self.doing} "
                               f"now: wait for it to finish or stop it first") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} ({' '.join(sys.argv)[:200]})\n".encode(), 0)
        except OSError:
            os.close(fd)                    # closing drops the flock
            raise
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            os.close(self.fd)       # closing drops the flock
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
