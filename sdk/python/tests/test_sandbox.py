# Sandbox and Controller lifecycle against a real daemon with tiny VMs:
# create, connect, list, get_info, ping, kill, the context manager, branch,
# and the Controller's low-level calls under the original client's names.
"""Sandbox lifecycle and the Controller."""

from __future__ import annotations

import os
import unittest
import uuid
from unittest import mock

from support import DAEMON_URL, PYTHON_TAG, TINY_TAG, DaemonTestCase, kill_quietly

from forkd import Controller, NotFoundError, Sandbox


class SandboxLifecycleTest(DaemonTestCase):
    """Sandbox.create, connect, list, get_info, ping and kill."""

    def test_create_connect_list_info_ping_kill(self) -> None:
        # No url: FORKD_URL is the default, as in the TypeScript SDK.
        with mock.patch.dict(os.environ, {"FORKD_URL": str(DAEMON_URL)}):
            sandbox = Sandbox.create(TINY_TAG)
            self.addCleanup(kill_quietly, sandbox)
        self.assertEqual(sandbox.controller.base_url, DAEMON_URL)
        self.assertTrue(sandbox.id.startswith("sb-"), sandbox.id)
        info = sandbox.get_info()
        self.assertEqual((info["id"], info["snapshot_tag"]), (sandbox.id, TINY_TAG))
        pong = sandbox.ping()
        self.assertIs(pong["pong"], True)
        self.assertEqual(pong["agent_lang"], "none")
        self.assertIn(sandbox.id, [s["id"] for s in Sandbox.list(url=DAEMON_URL)])
        again = Sandbox.connect(sandbox.id, url=DAEMON_URL)
        self.assertEqual(again.id, sandbox.id)
        self.assertEqual(again.commands.run("echo attached").stdout, "attached\n")
        sandbox.kill()
        with self.assertRaises(NotFoundError):
            sandbox.get_info()
        self.assertNotIn(sandbox.id, [s["id"] for s in Sandbox.list(url=DAEMON_URL)])
        with self.assertRaises(NotFoundError):
            again.kill()

    def test_with_kills_the_sandbox(self) -> None:
        with Sandbox.create(TINY_TAG, url=DAEMON_URL) as sandbox:
            self.addCleanup(kill_quietly, sandbox)
            sandbox_id = sandbox.id
            self.assertEqual(sandbox.commands.run("echo in").stdout, "in\n")
        with self.assertRaises(NotFoundError):
            self.controller.get_sandbox(sandbox_id)

    def test_branch_snapshots_the_running_sandbox(self) -> None:
        sandbox = self.create(TINY_TAG)
        sandbox.files.write("/root/state.txt", "before the branch")
        tag = f"test-pysdk-branch-{uuid.uuid4().hex[:8]}"
        snapshot = sandbox.branch(tag)
        self.addCleanup(self.controller.delete_snapshot, tag, force=True)
        self.assertEqual(snapshot["tag"], tag)
        self.assertEqual(snapshot["branched_from"], sandbox.id)
        self.assertIn(tag, [s["tag"] for s in self.controller.list_snapshots()])
        child = self.create(tag)
        self.assertEqual(child.files.read("/root/state.txt"), "before the branch")
        self.assertEqual(sandbox.commands.run("echo still running").stdout, "still running\n")


class ControllerTest(DaemonTestCase):
    """The low-level calls."""

    def test_meta_and_snapshots(self) -> None:
        self.assertEqual(self.controller.health(), {"ok": True})
        self.assertEqual(self.controller.version()["api"], "v1")
        tags = [s["tag"] for s in self.controller.list_snapshots()]
        self.assertIn(TINY_TAG, tags)
        self.assertIn(PYTHON_TAG, tags)
        self.assertEqual(self.controller.snapshot_info(TINY_TAG)["tag"], TINY_TAG)

    def test_spawn_exec_ping_get_kill(self) -> None:
        children = self.controller.spawn_sandboxes(TINY_TAG, n=2)
        for child in children:
            self.addCleanup(self._kill_id, child["id"])
        self.assertEqual(len({c["id"] for c in children}), 2)
        first = children[0]["id"]
        self.assertEqual(self.controller.get_sandbox(first)["id"], first)
        self.assertTrue(self.controller.ping_sandbox(first)["pong"])
        done = self.controller.exec_command(first, ["sh", "-c", "echo out; echo err >&2; exit 4"])
        self.assertEqual((done["stdout"], done["stderr"], done["exit_code"]), ("out\n", "err\n", 4))
        for child in children:
            self.controller.kill_sandbox(child["id"])
        live = {s["id"] for s in self.controller.list_sandboxes()}
        self.assertFalse(live & {c["id"] for c in children})

    def _kill_id(self, sandbox_id: str) -> None:
        try:
            Controller(DAEMON_URL).kill_sandbox(sandbox_id)
        except NotFoundError:
            pass


if __name__ == "__main__":
    unittest.main()
