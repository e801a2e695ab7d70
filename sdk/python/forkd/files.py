# sandbox.files, E2B style: read (text or bytes), write, list, stat, exists,
# remove, mkdir over the daemon's files routes (src/sdk/files.ts). Paths are
# absolute guest paths.
"""Read and write a sandbox's files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Literal, Optional, Union, overload

from .errors import NotFoundError
from .types import FileEntry

if TYPE_CHECKING:
    from .controller import Controller


@dataclass
class EntryInfo:
    """A file or directory in the sandbox."""

    name: str
    path: str
    """Absolute path in the sandbox."""
    type: str
    """``file``, ``dir``, ``symlink`` or ``other``."""
    size: int
    mode: int
    """Permission bits as a number (e.g. ``0o644``)."""
    mtime_ms: float


def _entry(path: str, e: FileEntry) -> EntryInfo:
    return EntryInfo(name=e["name"], path=path, type=e["type"], size=e["size"], mode=e["mode"], mtime_ms=e["mtime_ms"])


def _join(directory: str, name: str) -> str:
    return directory + name if directory.endswith("/") else f"{directory}/{name}"


class Files:
    """``sandbox.files``: one sandbox's filesystem."""

    def __init__(self, controller: "Controller", sandbox_id: str) -> None:
        self._controller = controller
        self._sandbox_id = sandbox_id

    @overload
    def read(self, path: str, format: Literal["text"] = "text", *, timeout: Optional[float] = None) -> str: ...

    @overload
    def read(self, path: str, format: Literal["bytes"], *, timeout: Optional[float] = None) -> bytes: ...

    def read(self, path: str, format: str = "text", *, timeout: Optional[float] = None) -> Union[str, bytes]:
        """Reads a file: ``format="text"`` (default) decodes UTF-8, ``"bytes"`` returns the raw bytes."""
        data = self._controller.read_file(self._sandbox_id, path, timeout=timeout)
        return data if format == "bytes" else data.decode("utf-8")

    def write(
        self, path: str, data: Union[str, bytes], *, mode: Optional[int] = None, timeout: Optional[float] = None
    ) -> None:
        """Writes a file (str as UTF-8), creating missing parent directories; ``mode`` e.g. ``0o755``."""
        self._controller.write_file(self._sandbox_id, path, data, mode=mode, timeout=timeout)

    def list(self, path: str, *, timeout: Optional[float] = None) -> List[EntryInfo]:
        """Lists a directory."""
        entries = self._controller.list_dir(self._sandbox_id, path, timeout=timeout)
        return [_entry(_join(path, e["name"]), e) for e in entries]

    def stat(self, path: str, *, timeout: Optional[float] = None) -> EntryInfo:
        """Describes one file or directory; NotFoundError if it is missing."""
        return _entry(path, self._controller.stat(self._sandbox_id, path, timeout=timeout))

    def exists(self, path: str, *, timeout: Optional[float] = None) -> bool:
        """True if the path exists."""
        try:
            self._controller.stat(self._sandbox_id, path, timeout=timeout)
            return True
        except NotFoundError:
            return False

    def remove(self, path: str, *, recursive: bool = True, timeout: Optional[float] = None) -> None:
        """Removes a file, or a directory with everything in it (``recursive``, the default, as E2B's)."""
        self._controller.remove(self._sandbox_id, path, recursive=recursive, timeout=timeout)

    def mkdir(self, path: str, *, timeout: Optional[float] = None) -> None:
        """Creates a directory and any missing parents."""
        self._controller.mkdir(self._sandbox_id, path, parents=True, timeout=timeout)

    make_dir = mkdir
    """E2B's name for ``mkdir``."""
