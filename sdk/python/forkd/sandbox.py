# Sandbox: the E2B-shaped handle on one running child VM. Sandbox.create
# forks one child of a snapshot; commands, files, eval, branch and the
# time-travel fork all go through a Controller for the same daemon
# (src/sdk/sandbox.ts).
"""One running sandbox."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .commands import Commands
from .controller import Controller, Score, Vary
from .errors import SandboxEvalError
from .files import Files
from .transport import DEFAULT_TIMEOUT
from .types import ForkedChildInfo, PingResult, SandboxInfo, SnapshotInfo


class Sandbox:
    """One running child VM.

    Use ``Sandbox.create`` or ``Sandbox.connect``; ``with`` kills it on exit.

    Attributes:
        id: The sandbox id (``sb-...``).
        controller: The client for the daemon that owns it.
        commands: Run commands in it.
        files: Read and write its files.
    """

    def __init__(self, controller: Controller, sandbox_id: str) -> None:
        self.id = sandbox_id
        self.controller = controller
        self.commands = Commands(controller, sandbox_id)
        self.files = Files(controller, sandbox_id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, url={self.controller.base_url!r})"

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    @classmethod
    def create(
        cls,
        snapshot_tag: str,
        *,
        url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        memory_limit_mib: Optional[int] = None,
        prewarm: Optional[bool] = None,
        egress: Optional[str] = None,
    ) -> "Sandbox":
        """Forks one sandbox from ``snapshot_tag``.

        Args:
            snapshot_tag: The snapshot to fork from.
            url: Daemon base URL; default ``$FORKD_URL``, else ``http://127.0.0.1:8889``.
            token: Bearer token; default ``$FORKD_TOKEN``.
            timeout: Default seconds per request for this sandbox's calls.
            memory_limit_mib: A memory cap for the child.
            prewarm: Fault the snapshot's memory in before returning.
            egress: ``none`` (default), ``internet`` or ``allow:<domain|cidr>,...``.
        """
        controller = Controller(url, token, timeout)
        infos = controller.spawn_sandboxes(
            snapshot_tag, 1, memory_limit_mib=memory_limit_mib, prewarm=prewarm, egress=egress
        )
        if not infos:
            raise RuntimeError("the daemon created no sandbox")
        return cls(controller, infos[0]["id"])

    @classmethod
    def connect(
        cls,
        sandbox_id: str,
        *,
        url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> "Sandbox":
        """Attaches to a running sandbox; NotFoundError if there is none."""
        controller = Controller(url, token, timeout)
        info = controller.get_sandbox(sandbox_id)
        return cls(controller, info["id"])

    @staticmethod
    def list(
        *, url: Optional[str] = None, token: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT
    ) -> List[SandboxInfo]:
        """The daemon's running sandboxes."""
        return Controller(url, token, timeout).list_sandboxes()

    def get_info(self, *, timeout: Optional[float] = None) -> SandboxInfo:
        """The sandbox's current description."""
        return self.controller.get_sandbox(self.id, timeout=timeout)

    def ping(self, *, timeout: Optional[float] = None) -> PingResult:
        """Round trip to the guest agent."""
        return self.controller.ping_sandbox(self.id, timeout=timeout)

    def eval(self, code: str, *, timeout: Optional[float] = None) -> Any:
        """Evaluates code in the guest's warm runtime and returns its value as JSON.

        Returns the value's repr() string when it has no JSON form (or from an
        original forkd daemon).

        Raises:
            SandboxEvalError: The code raised (``.traceback`` has the guest's text).
            ConflictError: The image has no eval runtime.
        """
        r = self.controller.eval_code(self.id, code, timeout=timeout)
        if r.get("error") is not None:
            raise SandboxEvalError(
                str(r["error"]),
                int(r.get("exit_code", 1)),
                url=f"{self.controller.base_url}/v1/sandboxes/{self.id}/eval",
            )
        return r["value"] if "value" in r else r.get("result")

    def branch(
        self,
        tag: Optional[str] = None,
        *,
        mode: Optional[str] = None,
        wait: Optional[bool] = None,
        measure_diff: Optional[bool] = None,
        parent_tag: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> SnapshotInfo:
        """Snapshots this sandbox into a new tag while it keeps running.

        Children of that tag (``Sandbox.create(tag)``) start from this moment.
        """
        return self.controller.branch_sandbox(
            self.id, tag, mode=mode, wait=wait, measure_diff=measure_diff, parent_tag=parent_tag, timeout=timeout
        )

    def fork(
        self,
        k: int,
        *,
        vary: Optional[Vary] = None,
        tag: Optional[str] = None,
        keep_snapshot: Optional[bool] = None,
        score: Optional[Score] = None,
        keep: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> List["ForkedSandbox"]:
        """Time-travel fork: ``k`` children of this sandbox as it is now, each handed its variant.

        This sandbox pauses for an instant and goes on. Each child sees its
        variant as environment variables of its commands, as variables of its
        warm runtime (and ``vary``), and in ``/run/forkd/vary.json``, with its
        own random generators. The children come back in the order of their
        variants (best first with ``score``).

        Args:
            k: How many children (1..100).
            vary: ``{name: [one value per child]}`` or one dict per child.
            tag: The intermediate snapshot's tag.
            keep_snapshot: Keep the intermediate snapshot (default: removed once the children run).
            score: Best of k: eval code (str), an argv (list) whose last line of
                stdout is a number, or the wire's dict; the children are ranked
                and all but the best ``keep`` are killed.
            keep: With ``score``: how many stay running (default 1).
            timeout: Seconds the call may take (default 600: it copies and restores VMs).
        """
        result = self.controller.fork_sandbox(
            self.id, k, vary=vary, tag=tag, keep_snapshot=keep_snapshot, score=score, keep=keep, timeout=timeout
        )
        return [ForkedSandbox(self.controller, child) for child in result["children"]]

    def best_of(
        self,
        k: int,
        *,
        score: Score,
        vary: Optional[Vary] = None,
        keep: Optional[int] = None,
        tag: Optional[str] = None,
        keep_snapshot: Optional[bool] = None,
        timeout: Optional[float] = None,
    ) -> List["ForkedSandbox"]:
        """Best of k: forks ``k`` ways, scores every child at once, and returns them best first.

        All but the best ``keep`` (default 1) are killed; ``sandbox.best_of(...)[0]`` is the winner.
        """
        return self.fork(k, vary=vary, score=score, keep=keep, tag=tag, keep_snapshot=keep_snapshot, timeout=timeout)

    def kill(self, *, timeout: Optional[float] = None) -> None:
        """Kills the sandbox."""
        self.controller.kill_sandbox(self.id, timeout=timeout)


class ForkedSandbox(Sandbox):
    """A child of ``Sandbox.fork``, with the variant it was handed and, with a score step, how it ranked.

    Attributes:
        variant: The variant this child was handed.
        score: With ``score``: its score, None when the step failed or gave no number.
        score_error: With ``score``: why there is no score, else None.
        kept: With ``score``: among the best ``keep`` and still running (the others were killed).
        info: The child's SandboxInfo as the fork answered it.
    """

    def __init__(self, controller: Controller, child: ForkedChildInfo) -> None:
        super().__init__(controller, child["id"])
        self.info: Dict[str, Any] = dict(child)
        self.variant: Dict[str, Any] = dict(child.get("variant") or {})
        self.score: Optional[float] = child.get("score")
        self.score_error: Optional[str] = child.get("score_error")
        self.kept: Optional[bool] = child.get("kept") if "score" in child else None
