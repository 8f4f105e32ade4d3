"""One error family for everything a user can cause or meet; cli.main turns it into `error: …`."""
import enum


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1
    BLOCKED = 3  # why-not --exit-code: the VM cannot migrate
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class CpuModelError(Exception):
    """An error with a message fit to print as one `error: …` line."""


class UsageError(CpuModelError):
    """Bad command line: wrong flag, missing argument, conflicting options."""


class SourceError(CpuModelError):
    """The cluster or the offline files could not give us what we asked for."""


class NotFound(SourceError):
    """A named object does not exist."""


class Forbidden(SourceError):
    """RBAC denied a request (HTTP 403)."""


class Conflict(SourceError):
    """A write lost a race with another writer (HTTP 409)."""
