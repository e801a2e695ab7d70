# sandbox.commands, E2B style: run() streams a command to completion over
# the daemon's NDJSON command stream, calling on_stdout/on_stderr as output
# arrives, or returns a CommandHandle with background=True. A non-zero exit
# raises CommandExitError carrying the output (src/sdk/commands.ts).
"""Run commands in a sandbox."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Literal,
    Mapping,
    Optional,
    Sequence,
    Set,
    Union,
    overload,
)

from .errors import CommandExitError, ForkdError, NotFoundError, error_from_event

if TYPE_CHECKING:
    from .controller import Controller
    from .transport import Response

OutputCallback = Callable[[str], None]
"""Called with each UTF-8 chunk of output as soon as the daemon sends it."""

REQUEST_SLACK = 10.0
"""Seconds a request may run past the command's own timeout before the client gives up."""


@dataclass
class CommandResult:
    """How a command ended."""

    stdout: str
    stderr: str
    exit_code: int
    signal: Optional[str] = None
    """The signal that ended it (e.g. ``"SIGKILL"``), else None."""
    timed_out: bool = False
    """True when the daemon killed it at its timeout."""


def _collect(
    events: Iterable[Mapping[str, Any]],
    on_stdout: Optional[OutputCallback],
    on_stderr: Optional[OutputCallback],
    url: str,
    on_start: Optional[Callable[[str], None]] = None,
) -> CommandResult:
    """Folds a command's event stream into its result, calling the output callbacks on the way."""
    stdout = []
    stderr = []
    for event in events:
        kind = event.get("type")
        if kind == "start":
            if on_start is not None:
                on_start(str(event.get("command_id")))
        elif kind == "stdout":
            stdout.append(event["data"])
            if on_stdout is not None:
                on_stdout(event["data"])
        elif kind == "stderr":
            stderr.append(event["data"])
            if on_stderr is not None:
                on_stderr(event["data"])
        elif kind == "exit":
            return CommandResult(
                stdout="".join(stdout),
                stderr="".join(stderr),
                exit_code=int(event["exit_code"]),
                signal=event.get("signal"),
                timed_out=bool(event.get("timed_out", False)),
            )
        elif kind == "error":
            raise error_from_event(event, url)
    # The daemon always ends with exit or error: the connection was cut.
    raise ForkdError("the command stream ended without an exit event", code="internal", status=200, url=url)


def _checked(result: CommandResult, allow_non_zero_exit: bool, url: str) -> CommandResult:
    if result.exit_code != 0 and not allow_non_zero_exit:
        raise CommandExitError(
            exit_code=result.exit_code,
            stdout=result.stdout,
            stderr=result.stderr,
            signal=result.signal,
            timed_out=result.timed_out,
            url=url,
        )
    return result


def _kill(controller: "Controller", sandbox_id: str, command_id: str, signal: Optional[int]) -> bool:
    try:
        controller.kill_command(sandbox_id, command_id, signal=signal)
        return True
    except NotFoundError:
        return False


class CommandHandle:
    """A command running in the background.

    With output callbacks, a thread follows its output at once; without,
    nothing is followed until ``wait()``, which replays the output from the
    start (the daemon keeps up to 1 MiB per command).
    """

    def __init__(
        self,
        controller: "Controller",
        sandbox_id: str,
        command_id: str,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> None:
        self._controller = controller
        self._sandbox_id = sandbox_id
        self.command_id = command_id
        """The daemon's id for the command (``cmd-...``)."""
        self._url = f"{controller.base_url}/v1/sandboxes/{sandbox_id}/commands/{command_id}"
        self._result: Optional[CommandResult] = None
        self._error: Optional[BaseException] = None
        self._lock = threading.Lock()
        self._open: Set[Response] = set()
        self._stopped = False
        self._thread: Optional[threading.Thread] = None
        if on_stdout is not None or on_stderr is not None:
            self._thread = threading.Thread(
                target=self._follow_in_background, args=(on_stdout, on_stderr), name=f"forkd-{command_id}", daemon=True
            )
            self._thread.start()

    def _follow(
        self, on_stdout: Optional[OutputCallback], on_stderr: Optional[OutputCallback], timeout: Optional[float]
    ) -> CommandResult:
        res = self._controller.command_events(self._sandbox_id, self.command_id, timeout=timeout)
        with self._lock:
            if self._stopped:
                res.close()
                raise ForkdError("stopped following the command (disconnect)", code="aborted", url=self._url)
            self._open.add(res)
        try:
            return _collect(res.ndjson(), on_stdout, on_stderr, self._url)
        except ForkdError:
            if self._stopped:
                raise ForkdError("stopped following the command (disconnect)", code="aborted", url=self._url) from None
            raise
        finally:
            with self._lock:
                self._open.discard(res)
            res.close()

    def _follow_in_background(self, on_stdout: Optional[OutputCallback], on_stderr: Optional[OutputCallback]) -> None:
        try:
            # Followed for as long as the command runs: a day at most.
            self._result = self._follow(on_stdout, on_stderr, 86400.0)
        except BaseException as err:  # handed to wait()
            self._error = err

    def wait(self, *, timeout: Optional[float] = None, allow_non_zero_exit: bool = False) -> CommandResult:
        """Waits for the exit and returns how it ended.

        Args:
            timeout: Seconds to wait (default: as long as the command runs, up to a day).
            allow_non_zero_exit: Return a non-zero result instead of raising CommandExitError.
        """
        if self._result is None and self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"command {self.command_id} still running after {timeout} s")
            if self._error is not None:
                raise self._error
        elif self._result is None:
            self._result = self._follow(None, None, 86400.0 if timeout is None else timeout)
        assert self._result is not None
        return _checked(self._result, allow_non_zero_exit, self._url)

    def kill(self, signal: Optional[int] = None) -> bool:
        """Kills the command (SIGKILL unless ``signal``); False if the daemon no longer knows it."""
        return _kill(self._controller, self._sandbox_id, self.command_id, signal)

    def send_stdin(self, data: str) -> None:
        """Writes to the command's stdin (it must have been started with ``stdin=True``)."""
        self._controller.send_stdin(self._sandbox_id, self.command_id, data)

    def close_stdin(self) -> None:
        """Closes the command's stdin (EOF)."""
        self._controller.send_stdin(self._sandbox_id, self.command_id, "", eof=True)

    def disconnect(self) -> None:
        """Stops following the output; the command keeps running."""
        with self._lock:
            self._stopped = True
            responses = list(self._open)
        for res in responses:
            res.abort()


class Commands:
    """``sandbox.commands``: run commands in one sandbox."""

    def __init__(self, controller: "Controller", sandbox_id: str) -> None:
        self._controller = controller
        self._sandbox_id = sandbox_id

    @overload
    def run(
        self,
        cmd: Union[str, Sequence[str]],
        *,
        background: Literal[False] = False,
        envs: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        input: Optional[str] = None,
        stdin: bool = False,
        timeout: Optional[float] = 60,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> CommandResult: ...

    @overload
    def run(
        self,
        cmd: Union[str, Sequence[str]],
        *,
        background: Literal[True],
        envs: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        input: Optional[str] = None,
        stdin: bool = False,
        timeout: Optional[float] = 60,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> CommandHandle: ...

    def run(
        self,
        cmd: Union[str, Sequence[str]],
        *,
        background: bool = False,
        envs: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        input: Optional[str] = None,
        stdin: bool = False,
        timeout: Optional[float] = 60,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> Union[CommandResult, CommandHandle]:
        """Runs a command: a str through ``/bin/sh -c``, a list of str as an argv.

        Args:
            cmd: The shell command, or the argv.
            background: Return a CommandHandle at once instead of waiting for the exit.
            envs: Extra environment variables.
            cwd: Working directory.
            input: Initial stdin (UTF-8); stdin is then closed unless ``stdin``.
            stdin: Keep stdin open for ``send_stdin`` (close it with ``close_stdin``).
            timeout: Seconds before the daemon kills it (default 60). With
                ``background``, 0 or None means never.
            on_stdout: Called with each chunk of stdout as it arrives.
            on_stderr: Called with each chunk of stderr as it arrives.

        Returns:
            A CommandResult, or a CommandHandle with ``background=True``.

        Raises:
            CommandExitError: The command exited non-zero (foreground).
        """
        shell = cmd if isinstance(cmd, str) else None
        argv = None if isinstance(cmd, str) else list(cmd)
        secs: Optional[int] = None if timeout is None else int(math.ceil(timeout))
        if background and secs is None:
            secs = 0
        if not background and secs is None:
            raise ValueError("a foreground command needs a timeout; use background=True to run without one")
        params: Dict[str, Any] = {
            "cmd": shell,
            "args": argv,
            "envs": envs,
            "cwd": cwd,
            "stdin": input,
            "stdin_open": True if stdin else None,
            "timeout_secs": secs,
        }
        if background:
            command_id = self._controller.start_command(self._sandbox_id, **params)
            return CommandHandle(self._controller, self._sandbox_id, command_id, on_stdout, on_stderr)
        url = f"{self._controller.base_url}/v1/sandboxes/{self._sandbox_id}/commands"
        # The daemon enforces the command's timeout; the request only gets a safety deadline.
        events = self._controller.run_command(self._sandbox_id, timeout=(secs or 0) + REQUEST_SLACK, **params)
        started: Dict[str, str] = {}

        def on_start(command_id: str) -> None:
            started["id"] = command_id

        try:
            result = _collect(events, on_stdout, on_stderr, url, on_start)
        except BaseException as err:
            # The daemon kills a foreground command whose client goes away; make sure of it
            # when the client stopped reading for its own reasons (a deadline, a callback's error).
            if "id" in started and (not isinstance(err, ForkdError) or err.status is None):
                try:
                    _kill(self._controller, self._sandbox_id, started["id"], None)
                except ForkdError:
                    pass
            raise
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        return _checked(result, False, url)

    def connect(
        self, command_id: str, on_stdout: Optional[OutputCallback] = None, on_stderr: Optional[OutputCallback] = None
    ) -> CommandHandle:
        """Attaches to a command started earlier (e.g. by another process)."""
        return CommandHandle(self._controller, self._sandbox_id, command_id, on_stdout, on_stderr)

    def kill(self, command_id: str, signal: Optional[int] = None) -> bool:
        """Kills a command by id; False if the daemon no longer knows it."""
        return _kill(self._controller, self._sandbox_id, command_id, signal)

    def send_stdin(self, command_id: str, data: str) -> None:
        """Writes to a command's stdin (started with ``stdin=True``)."""
        self._controller.send_stdin(self._sandbox_id, command_id, data)

    def close_stdin(self, command_id: str) -> None:
        """Closes a command's stdin (EOF)."""
        self._controller.send_stdin(self._sandbox_id, command_id, "", eof=True)
