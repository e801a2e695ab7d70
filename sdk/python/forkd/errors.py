# The SDK's error classes, and the one place they are rebuilt from what the
# daemon sent (`{"error": "...", "code": "..."}` plus the HTTP status). Every
# class derives from ForkdError and carries `.code`, `.status` and
# `.message`, so callers branch on the class or the code, never on the text.
"""Errors raised by the forkd SDK."""

from __future__ import annotations

import builtins
import json
from typing import Any, Dict, Mapping, Optional, Type
from urllib.parse import urlsplit, urlunsplit


class ForkdError(Exception):
    """Base of every error the SDK raises.

    Attributes:
        message: What went wrong (the daemon's ``error`` text when it sent one).
        code: The kind of error, e.g. ``not_found`` or ``conflict``: the
            daemon's code, or for an answer without one the code the daemon
            gives that status; SDK-side errors have codes of their own
            (``command_exit``, ``eval_error``, ``connection_failed``...).
        status: The HTTP status of the answer (200 for an error reported in a
            200 answer, such as a command stream's error event or code that
            raised); None when no answer came.
        body: The parsed JSON body of the answer, or its text.
        url: The request URL, without credentials.
    """

    default_code = "internal"

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        status: Optional[int] = None,
        body: Any = None,
        url: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.status = status
        self.body = body
        self.url = url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, status={self.status!r})"


# The original forkd Python SDK's name for a daemon error; the TypeScript SDK's too.
ControllerError = ForkdError


class InvalidArgumentError(ForkdError):
    """400: the request is malformed (``invalid_argument``; also 415 ``unsupported_media_type``)."""

    default_code = "invalid_argument"


class AuthenticationError(ForkdError):
    """401: no bearer token, or the wrong one (``unauthorized``)."""

    default_code = "unauthorized"


# The TypeScript SDK's name for the same class.
UnauthorizedError = AuthenticationError


class ForbiddenError(ForkdError):
    """403: refused (``forbidden``, e.g. a guest path; ``untrusted``, an unsigned pack)."""

    default_code = "forbidden"


class NotFoundError(ForkdError):
    """404: no such sandbox, snapshot, workspace, command or file (``not_found``)."""

    default_code = "not_found"


class ConflictError(ForkdError):
    """409: the resource's state forbids the request.

    ``code`` tells which: ``conflict`` (busy, not ready, in use, no eval
    runtime), ``already_exists``, ``incompatible``, ``corrupt``.
    """

    default_code = "conflict"


class AlreadyExistsError(ConflictError):
    """409 ``already_exists``: the tag or name is taken."""

    default_code = "already_exists"


class TooLargeError(ForkdError):
    """413: the request, or what the guest sent back, is over a limit (``too_large``)."""

    default_code = "too_large"


class AbortedError(ForkdError):
    """499: the daemon stopped the operation before it finished (``aborted``)."""

    default_code = "aborted"


class AgentUnavailableError(ForkdError):
    """502: the sandbox's guest agent cannot be reached (``agent_unavailable``)."""

    default_code = "agent_unavailable"


class ResourceExhaustedError(ForkdError):
    """503: the host is out of something, memory or the branch cap (``resource_exhausted``)."""

    default_code = "resource_exhausted"


class ForkdTimeoutError(ForkdError, builtins.TimeoutError):
    """504: the daemon gave up waiting (``timeout``). Also a builtin TimeoutError."""

    default_code = "timeout"


class InsufficientStorageError(ForkdError):
    """507: the guest's or the host's disk is full (``insufficient_storage``)."""

    default_code = "insufficient_storage"


class ForkdConnectionError(ForkdError, builtins.ConnectionError):
    """No answer: the daemon could not be reached or the connection broke (``connection_failed``)."""

    default_code = "connection_failed"


class RequestTimeoutError(ForkdTimeoutError):
    """The request's own deadline passed before the daemon answered (``request_timeout``)."""

    default_code = "request_timeout"


class CommandExitError(ForkdError):
    """A command ended with a non-zero exit code; its output is kept. Never sent by the daemon."""

    default_code = "command_exit"

    def __init__(
        self,
        *,
        exit_code: int,
        stdout: str,
        stderr: str,
        signal: Optional[str] = None,
        timed_out: bool = False,
        url: Optional[str] = None,
    ) -> None:
        if timed_out:
            how = "timed out"
        elif signal is not None:
            how = f"was killed by {signal}"
        else:
            how = f"exited with code {exit_code}"
        tail = "\n".join(stderr.strip().split("\n")[-3:])
        super().__init__(f"command {how}" + (f": {tail}" if tail else ""), status=200, url=url)
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.signal = signal
        self.timed_out = timed_out


class SandboxEvalError(ForkdError):
    """Code evaluated in a sandbox raised; ``traceback`` is the guest's error text."""

    default_code = "eval_error"

    def __init__(self, traceback: str, exit_code: int, url: Optional[str] = None) -> None:
        lines = traceback.strip().split("\n")
        super().__init__(lines[-1] or "evaluation failed", status=200, url=url)
        self.traceback = traceback
        self.exit_code = exit_code


# The class for each code the daemon sends (src/errors.ts, docs/API-extensions.md).
# Codes not listed that a newer daemon may send are classed by status; the
# daemon's own 500s stay plain ForkdErrors.
CLASS_OF_CODE: Dict[str, Type[ForkdError]] = {
    "invalid_argument": InvalidArgumentError,
    "unsupported_media_type": InvalidArgumentError,
    "unauthorized": AuthenticationError,
    "forbidden": ForbiddenError,
    "untrusted": ForbiddenError,
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "incompatible": ConflictError,
    "corrupt": ConflictError,
    "already_exists": AlreadyExistsError,
    "too_large": TooLargeError,
    "aborted": AbortedError,
    "agent_unavailable": AgentUnavailableError,
    "resource_exhausted": ResourceExhaustedError,
    "timeout": ForkdTimeoutError,
    "insufficient_storage": InsufficientStorageError,
    "internal": ForkdError,
    "vm_exited": ForkdError,
    "qmp_error": ForkdError,
    "agent_error": ForkdError,
    "missing_dependency": ForkdError,
    "remote": ForkdError,
}

# The code the daemon gives a status when no engine error names one.
CODE_OF_STATUS: Dict[int, str] = {
    400: "invalid_argument",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    499: "aborted",
    502: "agent_unavailable",
    503: "resource_exhausted",
    504: "timeout",
    507: "insufficient_storage",
}


def without_credentials(url: str) -> str:
    """``url`` without any ``user:password@`` part, fit for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def daemon_error(message: str, *, status: int, code: Optional[str], body: Any, url: str) -> ForkdError:
    """The one builder of daemon errors, for error answers and stream error events alike.

    The class comes from ``code``, or from the status when the code is
    missing or unknown to this SDK (the code itself is kept).
    """
    by_status = CODE_OF_STATUS.get(status)
    final_code = code or by_status or "internal"
    cls = CLASS_OF_CODE.get(final_code)
    if cls is None and by_status is not None:
        cls = CLASS_OF_CODE.get(by_status)
    return (cls or ForkdError)(message, code=final_code, status=status, body=body, url=without_credentials(url))


def _string_field(body: Any, key: str) -> Optional[str]:
    if isinstance(body, Mapping):
        value = body.get(key)
        if isinstance(value, str):
            return value
    return None


def error_from_response(status: int, reason: str, raw: bytes, url: str) -> ForkdError:
    """A non-2xx answer as its error: the body's ``error`` and ``code`` when present, else the status line."""
    text = raw.decode("utf-8", errors="replace")
    body: Any = text
    try:
        body = json.loads(text) if text else None
    except ValueError:
        pass  # not JSON (a proxy's page): keep the text
    message = _string_field(body, "error") or f"{status} {reason or 'error'} from {without_credentials(url)}"
    return daemon_error(message, status=status, code=_string_field(body, "code"), body=body, url=url)


def error_from_event(event: Mapping[str, Any], url: str) -> ForkdError:
    """An ``{"type": "error"}`` event of a 200 NDJSON stream as its error."""
    message = _string_field(event, "error") or "the command failed"
    return daemon_error(message, status=200, code=_string_field(event, "code"), body=dict(event), url=url)
