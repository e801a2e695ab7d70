# The forkd Python SDK's public surface: Sandbox (E2B-shaped), the
# low-level Controller, and the error classes. Standard library only.
r"""forkd: fork warmed QEMU microVMs from Python.

>>> from forkd import Sandbox
>>> with Sandbox.create("python-numpy") as sb:
...     sb.commands.run("echo hi").stdout
'hi\\n'
"""

from .commands import CommandHandle, CommandResult, Commands
from .controller import Controller, Score, Vary
from .errors import (
    AbortedError,
    AgentUnavailableError,
    AlreadyExistsError,
    AuthenticationError,
    CommandExitError,
    ConflictError,
    ControllerError,
    ForbiddenError,
    ForkdConnectionError,
    ForkdError,
    ForkdTimeoutError,
    InsufficientStorageError,
    InvalidArgumentError,
    NotFoundError,
    RequestTimeoutError,
    ResourceExhaustedError,
    SandboxEvalError,
    TooLargeError,
    UnauthorizedError,
)
from .files import EntryInfo, Files
from .sandbox import ForkedSandbox, Sandbox
from .version import __version__

__all__ = [
    "AbortedError",
    "AgentUnavailableError",
    "AlreadyExistsError",
    "AuthenticationError",
    "CommandExitError",
    "CommandHandle",
    "CommandResult",
    "Commands",
    "ConflictError",
    "Controller",
    "ControllerError",
    "EntryInfo",
    "Files",
    "ForbiddenError",
    "ForkdConnectionError",
    "ForkdError",
    "ForkdTimeoutError",
    "ForkedSandbox",
    "InsufficientStorageError",
    "InvalidArgumentError",
    "NotFoundError",
    "RequestTimeoutError",
    "ResourceExhaustedError",
    "Sandbox",
    "SandboxEvalError",
    "Score",
    "TooLargeError",
    "UnauthorizedError",
    "Vary",
    "__version__",
]
