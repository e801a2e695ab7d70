# Controller: one method per daemon endpoint, thin by design: keyword
# arguments in, the wire's JSON dicts out, every error the daemon answers as
# a ForkdError subclass chosen by its code. Method names follow the original
# forkd Python SDK (deeplethe/forkd sdk/python/forkd/controller.py:
# list_snapshots, spawn_sandboxes, branch_sandbox, ...) where it had the
# route; the forkd extensions are named after their routes, as the
# TypeScript Controller (src/sdk/controller.ts) names them.
"""Low-level client for the forkd daemon's REST API."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union, cast

from .transport import DEFAULT_TIMEOUT, DEFAULT_URL, HttpClient, Response, env, seg
from .types import EvalResult, ExecResult, FileEntry, ForkResult, PingResult, SandboxInfo, SnapshotInfo

Vary = Union[Mapping[str, Sequence[Any]], Sequence[Mapping[str, Any]]]
"""A fork's variants: ``{name: [one value per child]}`` or one dict per child."""

Score = Union[str, Sequence[str], Mapping[str, Any]]
"""A best-of-k score step: eval code (a str), an argv to exec (a list), or the wire's
``{"eval": code}`` / ``{"exec": argv}`` dict, optionally with ``timeout_secs``."""

SLOW_TIMEOUT = 600.0
"""Default seconds for calls that boot or copy a VM (create_snapshot, branch, fork)."""


def _drop_none(body: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def score_body(score: Score) -> Dict[str, Any]:
    """The wire's score step for a ``Score``."""
    if isinstance(score, str):
        return {"eval": score}
    if isinstance(score, Mapping):
        return dict(score)
    return {"exec": list(score)}


class Controller:
    """A client for one forkd daemon.

    Args:
        base_url: Daemon base URL; default ``$FORKD_URL``, else ``http://127.0.0.1:8889``.
        token: Bearer token; default ``$FORKD_TOKEN``. Needed when the daemon
            was started with ``--token-file``.
        timeout: Seconds each request may take unless the call sets its own
            ``timeout`` (calls that boot or copy VMs default to 600).
    """

    def __init__(
        self, base_url: Optional[str] = None, token: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.base_url: str = (base_url or env("FORKD_URL") or DEFAULT_URL).rstrip("/")
        self.token: Optional[str] = token if token is not None else env("FORKD_TOKEN")
        self.timeout = timeout
        self.http = HttpClient(self.base_url, self.token, timeout)

    @property
    def url(self) -> str:
        """The daemon's base URL (the TypeScript SDK's name for ``base_url``)."""
        return self.base_url

    def auth_headers(self) -> Dict[str, str]:
        """Headers another client (a WebSocket, Playwright) needs to reach this daemon."""
        return self.http.auth_headers()

    # ---- meta ----

    def health(self, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """``GET /healthz`` (open even when the daemon has a token)."""
        return cast(Dict[str, Any], self.http.json("GET", "/healthz", timeout=timeout))

    def version(self, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """``GET /version``."""
        return cast(Dict[str, Any], self.http.json("GET", "/version", timeout=timeout))

    # ---- snapshots ----

    def list_snapshots(self, *, timeout: Optional[float] = None) -> List[SnapshotInfo]:
        """``GET /v1/snapshots``: every snapshot the daemon knows."""
        return cast(List[SnapshotInfo], self.http.json("GET", "/v1/snapshots", timeout=timeout))

    def create_snapshot(
        self,
        tag: str,
        *,
        image: Optional[str] = None,
        kernel: Optional[str] = None,
        rootfs: Optional[str] = None,
        rw: Optional[bool] = None,
        boot_wait_secs: Optional[float] = None,
        mem_mib: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> SnapshotInfo:
        """``POST /v1/snapshots``: boots, warms and freezes a new snapshot (can take minutes).

        ``image`` names a recipe (``tiny``, ``python-numpy``); ``kernel`` and
        ``rootfs`` are the original's absolute host paths instead.
        """
        body = _drop_none(
            {
                "tag": tag,
                "image": image,
                "kernel": kernel,
                "rootfs": rootfs,
                "rw": rw,
                "boot_wait_secs": boot_wait_secs,
                "mem_mib": mem_mib,
            }
        )
        return cast(
            SnapshotInfo, self.http.json("POST", "/v1/snapshots", json_body=body, timeout=timeout or SLOW_TIMEOUT)
        )

    def delete_snapshot(
        self, tag: str, *, cascade: bool = False, force: bool = False, timeout: Optional[float] = None
    ) -> None:
        """``DELETE /v1/snapshots/:tag``; ``cascade`` removes dependents, ``force`` kills its sandboxes."""
        query = {"cascade": True if cascade else None, "force": True if force else None}
        self.http.empty("DELETE", f"/v1/snapshots/{seg(tag)}", query=query, timeout=timeout)

    def snapshot_info(self, tag: str, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """``GET /v1/snapshots/:tag/info``: sizes and lineage."""
        return cast(Dict[str, Any], self.http.json("GET", f"/v1/snapshots/{seg(tag)}/info", timeout=timeout))

    # ---- sandboxes ----

    def list_sandboxes(self, *, timeout: Optional[float] = None) -> List[SandboxInfo]:
        """``GET /v1/sandboxes``: every running sandbox."""
        return cast(List[SandboxInfo], self.http.json("GET", "/v1/sandboxes", timeout=timeout))

    def spawn_sandboxes(
        self,
        snapshot_tag: str,
        n: int = 1,
        *,
        memory_limit_mib: Optional[int] = None,
        prewarm: Optional[bool] = None,
        egress: Optional[str] = None,
        per_child_netns: Optional[bool] = None,
        live_fork: Optional[bool] = None,
        hugepages: Optional[bool] = None,
        cpu_cores: Optional[float] = None,
        cpu_weight: Optional[int] = None,
        pids_max: Optional[int] = None,
        io_read_bps: Optional[int] = None,
        io_write_bps: Optional[int] = None,
        io_read_iops: Optional[int] = None,
        io_write_iops: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> List[SandboxInfo]:
        """``POST /v1/sandboxes``: forks ``n`` children of a snapshot (all or nothing).

        ``egress`` is ``none`` (the default), ``internet`` or ``allow:<domain|cidr>,...``.
        """
        body = _drop_none(
            {
                "snapshot_tag": snapshot_tag,
                "n": n,
                "memory_limit_mib": memory_limit_mib,
                "prewarm": prewarm,
                "egress": egress,
                "per_child_netns": per_child_netns,
                "live_fork": live_fork,
                "hugepages": hugepages,
                "cpu_cores": cpu_cores,
                "cpu_weight": cpu_weight,
                "pids_max": pids_max,
                "io_read_bps": io_read_bps,
                "io_write_bps": io_write_bps,
                "io_read_iops": io_read_iops,
                "io_write_iops": io_write_iops,
            }
        )
        return cast(
            List[SandboxInfo], self.http.json("POST", "/v1/sandboxes", json_body=body, timeout=timeout or SLOW_TIMEOUT)
        )

    def get_sandbox(self, sandbox_id: str, *, timeout: Optional[float] = None) -> SandboxInfo:
        """``GET /v1/sandboxes/:id``."""
        return cast(SandboxInfo, self.http.json("GET", f"/v1/sandboxes/{seg(sandbox_id)}", timeout=timeout))

    def kill_sandbox(self, sandbox_id: str, *, timeout: Optional[float] = None) -> None:
        """``DELETE /v1/sandboxes/:id``: kills the child."""
        self.http.empty("DELETE", f"/v1/sandboxes/{seg(sandbox_id)}", timeout=timeout)

    def set_egress(self, sandbox_id: str, egress: str, *, timeout: Optional[float] = None) -> SandboxInfo:
        """``PUT /v1/sandboxes/:id/egress``: change what a running sandbox's guest may reach."""
        return cast(
            SandboxInfo,
            self.http.json(
                "PUT", f"/v1/sandboxes/{seg(sandbox_id)}/egress", json_body={"egress": egress}, timeout=timeout
            ),
        )

    def get_browser(self, sandbox_id: str, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """``GET /v1/sandboxes/:id/browser``: where a browser sandbox's CDP endpoint is."""
        return cast(Dict[str, Any], self.http.json("GET", f"/v1/sandboxes/{seg(sandbox_id)}/browser", timeout=timeout))

    def ping_sandbox(self, sandbox_id: str, *, timeout: Optional[float] = None) -> PingResult:
        """``POST /v1/sandboxes/:id/ping``: round trip to the guest agent."""
        return cast(PingResult, self.http.json("POST", f"/v1/sandboxes/{seg(sandbox_id)}/ping", timeout=timeout))

    def exec_command(
        self,
        sandbox_id: str,
        args: Sequence[str],
        timeout_secs: Optional[int] = None,
        *,
        timeout: Optional[float] = None,
    ) -> ExecResult:
        """``POST /v1/sandboxes/:id/exec``: runs argv to completion; a non-zero exit is not an error here."""
        body = _drop_none({"args": list(args), "timeout_secs": timeout_secs})
        limit = timeout if timeout is not None else max(self.timeout, (timeout_secs or 30) + 15)
        return cast(
            ExecResult, self.http.json("POST", f"/v1/sandboxes/{seg(sandbox_id)}/exec", json_body=body, timeout=limit)
        )

    def eval_code(self, sandbox_id: str, code: str, *, timeout: Optional[float] = None) -> EvalResult:
        """``POST /v1/sandboxes/:id/eval``: evaluates code in the guest's warm runtime."""
        return cast(
            EvalResult,
            self.http.json("POST", f"/v1/sandboxes/{seg(sandbox_id)}/eval", json_body={"code": code}, timeout=timeout),
        )

    def branch_sandbox(
        self,
        sandbox_id: str,
        tag: Optional[str] = None,
        *,
        mode: Optional[str] = None,
        wait: Optional[bool] = None,
        measure_diff: Optional[bool] = None,
        parent_tag: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> SnapshotInfo:
        """``POST /v1/sandboxes/:id/branch``: snapshots the running sandbox into a new tag; it keeps running.

        ``mode`` is ``full``, ``diff`` or ``live``; with ``wait=False`` the
        answer comes at once with status ``writing``.
        """
        body = _drop_none(
            {"tag": tag, "mode": mode, "wait": wait, "measure_diff": measure_diff, "parent_tag": parent_tag}
        )
        return cast(
            SnapshotInfo,
            self.http.json(
                "POST", f"/v1/sandboxes/{seg(sandbox_id)}/branch", json_body=body, timeout=timeout or SLOW_TIMEOUT
            ),
        )

    def fork_sandbox(
        self,
        sandbox_id: str,
        k: int,
        *,
        vary: Optional[Vary] = None,
        tag: Optional[str] = None,
        keep_snapshot: Optional[bool] = None,
        score: Optional[Score] = None,
        keep: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> ForkResult:
        """``POST /v1/sandboxes/:id/fork``: ``k`` children of the running sandbox as it is now.

        The sandbox is branched live (it goes on) and each child is handed its
        variant. With ``score``, best of k: the children come back ranked and
        all but the best ``keep`` are killed.
        """
        body = _drop_none(
            {
                "k": k,
                "vary": (dict(vary) if isinstance(vary, Mapping) else [dict(v) for v in vary])
                if vary is not None
                else None,
                "tag": tag,
                "keep_snapshot": keep_snapshot,
                "score": score_body(score) if score is not None else None,
                "keep": keep,
            }
        )
        return cast(
            ForkResult,
            self.http.json(
                "POST", f"/v1/sandboxes/{seg(sandbox_id)}/fork", json_body=body, timeout=timeout or SLOW_TIMEOUT
            ),
        )

    # ---- workspaces ----

    def list_workspaces(self, *, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        """``GET /v1/workspaces``."""
        return cast(List[Dict[str, Any]], self.http.json("GET", "/v1/workspaces", timeout=timeout))

    def create_workspace(
        self,
        name: str,
        snapshot_tag: str,
        *,
        memory_limit_mib: Optional[int] = None,
        egress: Optional[str] = None,
        restrict_egress: Optional[bool] = None,
        timeout: Optional[float] = None,
    ) -> Dict[str, Any]:
        """``POST /v1/workspaces``: a named, suspendable sandbox forked from ``snapshot_tag``."""
        body = _drop_none(
            {
                "name": name,
                "snapshot_tag": snapshot_tag,
                "memory_limit_mib": memory_limit_mib,
                "egress": egress,
                "restrict_egress": restrict_egress,
            }
        )
        return cast(
            Dict[str, Any], self.http.json("POST", "/v1/workspaces", json_body=body, timeout=timeout or SLOW_TIMEOUT)
        )

    def get_workspace(self, name: str, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """``GET /v1/workspaces/:name``."""
        return cast(Dict[str, Any], self.http.json("GET", f"/v1/workspaces/{seg(name)}", timeout=timeout))

    def suspend_workspace(self, name: str, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """``POST /v1/workspaces/:name/suspend``: saves its state and stops its sandbox."""
        return cast(
            Dict[str, Any],
            self.http.json(
                "POST", f"/v1/workspaces/{seg(name)}/suspend", json_body={}, timeout=timeout or SLOW_TIMEOUT
            ),
        )

    def resume_workspace(self, name: str, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """``POST /v1/workspaces/:name/resume``: a new sandbox from the saved state."""
        return cast(
            Dict[str, Any],
            self.http.json("POST", f"/v1/workspaces/{seg(name)}/resume", json_body={}, timeout=timeout or SLOW_TIMEOUT),
        )

    def delete_workspace(self, name: str, *, timeout: Optional[float] = None) -> None:
        """``DELETE /v1/workspaces/:name``: its sandbox and saved states go; the source snapshot stays."""
        self.http.empty("DELETE", f"/v1/workspaces/{seg(name)}", timeout=timeout)

    # ---- commands (extension) ----

    def run_command(
        self,
        sandbox_id: str,
        *,
        cmd: Optional[str] = None,
        args: Optional[Sequence[str]] = None,
        envs: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stdin: Optional[str] = None,
        stdin_open: Optional[bool] = None,
        timeout_secs: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> Iterator[Dict[str, Any]]:
        """``POST /v1/sandboxes/:id/commands`` in the foreground: its NDJSON events as they arrive.

        ``start`` comes first, ``exit`` or ``error`` last. Closing the iterator
        early closes the connection, which kills the command.
        """
        body = _command_body(cmd, args, envs, cwd, stdin, stdin_open, timeout_secs, background=False)
        res = self.http.send("POST", f"/v1/sandboxes/{seg(sandbox_id)}/commands", json_body=body, timeout=timeout)
        return res.ndjson()

    def start_command(
        self,
        sandbox_id: str,
        *,
        cmd: Optional[str] = None,
        args: Optional[Sequence[str]] = None,
        envs: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stdin: Optional[str] = None,
        stdin_open: Optional[bool] = None,
        timeout_secs: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> str:
        """``POST /v1/sandboxes/:id/commands`` with ``background: true``: returns the command id."""
        body = _command_body(cmd, args, envs, cwd, stdin, stdin_open, timeout_secs, background=True)
        started = self.http.json("POST", f"/v1/sandboxes/{seg(sandbox_id)}/commands", json_body=body, timeout=timeout)
        return str(started["command_id"])

    def command_events(self, sandbox_id: str, command_id: str, *, timeout: Optional[float] = None) -> Response:
        """``GET .../commands/:cid/events``: replays buffered output, then follows until exit.

        Returns the open answer; iterate ``.ndjson()`` and ``close()`` it to stop following.
        """
        return self.http.send(
            "GET", f"/v1/sandboxes/{seg(sandbox_id)}/commands/{seg(command_id)}/events", timeout=timeout
        )

    def send_stdin(
        self, sandbox_id: str, command_id: str, data: str, *, eof: bool = False, timeout: Optional[float] = None
    ) -> None:
        """``POST .../commands/:cid/stdin`` (the command must have been started with ``stdin_open``)."""
        self.http.empty(
            "POST",
            f"/v1/sandboxes/{seg(sandbox_id)}/commands/{seg(command_id)}/stdin",
            json_body={"data": data, "eof": eof},
            timeout=timeout,
        )

    def kill_command(
        self, sandbox_id: str, command_id: str, *, signal: Optional[int] = None, timeout: Optional[float] = None
    ) -> None:
        """``POST .../commands/:cid/kill``; ``signal`` is a Unix signal number (the daemon's default is 9)."""
        self.http.empty(
            "POST",
            f"/v1/sandboxes/{seg(sandbox_id)}/commands/{seg(command_id)}/kill",
            json_body={} if signal is None else {"signal": signal},
            timeout=timeout,
        )

    # ---- files (extension) ----

    def read_file(self, sandbox_id: str, path: str, *, timeout: Optional[float] = None) -> bytes:
        """``GET .../files?path=``: the file's bytes."""
        return self.http.send(
            "GET", f"/v1/sandboxes/{seg(sandbox_id)}/files", query={"path": path}, timeout=timeout
        ).read()

    def write_file(
        self,
        sandbox_id: str,
        path: str,
        data: Union[bytes, str],
        *,
        mode: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> None:
        """``PUT .../files?path=``: writes the file (str as UTF-8), creating parents; ``mode`` e.g. ``0o755``."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        query = {"path": path, "mode": None if mode is None else format(mode, "03o")}
        self.http.empty("PUT", f"/v1/sandboxes/{seg(sandbox_id)}/files", query=query, data=raw, timeout=timeout)

    def list_dir(self, sandbox_id: str, path: str, *, timeout: Optional[float] = None) -> List[FileEntry]:
        """``GET .../files/list?path=``: a directory's entries."""
        return cast(
            List[FileEntry],
            self.http.json("GET", f"/v1/sandboxes/{seg(sandbox_id)}/files/list", query={"path": path}, timeout=timeout),
        )

    def stat(self, sandbox_id: str, path: str, *, timeout: Optional[float] = None) -> FileEntry:
        """``GET .../files/stat?path=``."""
        return cast(
            FileEntry,
            self.http.json("GET", f"/v1/sandboxes/{seg(sandbox_id)}/files/stat", query={"path": path}, timeout=timeout),
        )

    def remove(self, sandbox_id: str, path: str, *, recursive: bool = False, timeout: Optional[float] = None) -> None:
        """``DELETE .../files?path=``; ``recursive`` removes a directory and everything in it."""
        query = {"path": path, "recursive": True if recursive else None}
        self.http.empty("DELETE", f"/v1/sandboxes/{seg(sandbox_id)}/files", query=query, timeout=timeout)

    def mkdir(self, sandbox_id: str, path: str, *, parents: bool = True, timeout: Optional[float] = None) -> None:
        """``POST .../files/mkdir``; ``parents`` creates missing parents."""
        self.http.empty(
            "POST",
            f"/v1/sandboxes/{seg(sandbox_id)}/files/mkdir",
            json_body={"path": path, "parents": parents},
            timeout=timeout,
        )


def _command_body(
    cmd: Optional[str],
    args: Optional[Sequence[str]],
    envs: Optional[Mapping[str, str]],
    cwd: Optional[str],
    stdin: Optional[str],
    stdin_open: Optional[bool],
    timeout_secs: Optional[int],
    *,
    background: bool,
) -> Dict[str, Any]:
    return _drop_none(
        {
            "cmd": cmd,
            "args": list(args) if args is not None else None,
            "envs": dict(envs) if envs is not None else None,
            "cwd": cwd,
            "stdin": stdin,
            "stdin_open": stdin_open,
            "timeout_secs": timeout_secs,
            "background": background,
        }
    )
