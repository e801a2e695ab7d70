# The wire shapes of the daemon's REST API as TypedDicts, snake_case as on
# the wire (src/api/schemas.ts is the source of truth). Only for type
# checkers: at run time every answer is a plain dict.
"""Typed views of the daemon's JSON answers."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, TypedDict

# Keys a daemon may leave out sit in a `total=False` base (NotRequired is 3.11+).


class _SnapshotInfoOptional(TypedDict, total=False):
    branched_from: str
    pause_ms: float
    warning: str


class SnapshotInfo(_SnapshotInfoOptional):
    """A snapshot as listed and created (``GET/POST /v1/snapshots``)."""

    tag: str
    dir: str
    created_at_unix: float
    status: str
    bootable: bool


class SandboxInfo(TypedDict):
    """A running child VM (``GET/POST /v1/sandboxes``)."""

    id: str
    snapshot_tag: str
    netns: Optional[str]
    guest_addr: str
    created_at_unix: float
    pid: Optional[int]
    memory_limit_mib: Optional[int]
    has_branched: bool
    last_branch_memory_path: Optional[str]
    branch_count: int


class _ForkedChildOptional(TypedDict, total=False):
    score: Optional[float]
    score_error: Optional[str]
    kept: bool


class ForkedChildInfo(SandboxInfo, _ForkedChildOptional):
    """One child of ``POST /v1/sandboxes/:id/fork``: its SandboxInfo, its variant and, with a score step, its rank."""

    variant: Dict[str, Any]


class ForkResult(TypedDict):
    """``POST /v1/sandboxes/:id/fork``: the children in the order of their variants (best first with a score)."""

    source_id: str
    snapshot_tag: str
    snapshot_kept: bool
    pause_ms: float
    branch_ms: float
    spawn_ms: float
    children: List[ForkedChildInfo]


class PingResult(TypedDict):
    """``POST /v1/sandboxes/:id/ping``."""

    pong: bool
    numpy_version: Optional[str]
    pid: int
    agent_lang: str
    warmup_ready: bool
    agent_version: str
    uptime_ms: float
    runtime: Optional[Dict[str, Any]]


class _ExecResultOptional(TypedDict, total=False):
    truncated: bool


class ExecResult(_ExecResultOptional):
    """``POST /v1/sandboxes/:id/exec``: the whole output, after the command ended."""

    stdout: str
    stderr: str
    exit_code: int


class _EvalResultOptional(TypedDict, total=False):
    value: Any


class EvalResult(_EvalResultOptional):
    """``POST /v1/sandboxes/:id/eval``: ``result`` is the repr(), ``value`` the JSON value."""

    result: Optional[str]
    error: Optional[str]
    exit_code: int


class FileEntry(TypedDict):
    """One entry of ``GET .../files/list`` or ``GET .../files/stat``."""

    name: str
    type: str
    size: int
    mode: int
    mtime_ms: float
