# sandbox.commands against tiny VMs: a streamed command whose output arrives
# while it runs, argv and shell forms, env, cwd and stdin, a non-zero exit
# and a timeout as CommandExitError, and background commands (killed, fed
# through stdin, followed with callbacks, attached to by id).
"""Commands: streaming, background handles and stdin."""

from __future__ import annotations

import time
import unittest
from typing import List, Tuple

from support import TINY_TAG, DaemonTestCase

from forkd import CommandExitError, CommandHandle, CommandResult, ForkdError, Sandbox


class CommandsTest(DaemonTestCase):
    """sandbox.commands.run and its handles."""

    sandbox: Sandbox

    @classmethod
    def setUpClass(cls) -> None:
        cls.sandbox = cls.shared(TINY_TAG)

    def test_streaming_output_arrives_while_the_command_runs(self) -> None:
        seen: List[Tuple[str, float, str]] = []
        start = time.monotonic()
        result = self.sandbox.commands.run(
            "echo one; sleep 1; echo two >&2; sleep 1; echo three",
            on_stdout=lambda data: seen.append(("out", time.monotonic(), data)),
            on_stderr=lambda data: seen.append(("err", time.monotonic(), data)),
        )
        end = time.monotonic()
        self.assertIsInstance(result, CommandResult)
        self.assertEqual((result.stdout, result.stderr, result.exit_code), ("one\nthree\n", "two\n", 0))
        self.assertEqual("".join(d for k, _, d in seen if k == "out"), "one\nthree\n")
        self.assertEqual("".join(d for k, _, d in seen if k == "err"), "two\n")
        first = seen[0]
        self.assertEqual(first[0], "out")
        self.assertGreater(end - first[1], 1.5, "the first chunk came about 2 s before the end")
        self.assertGreater(end - start, 1.9)

    def test_argv_env_cwd_and_input(self) -> None:
        run = self.sandbox.commands.run
        self.assertEqual(run(["echo", "a  b", "$HOME"]).stdout, "a  b $HOME\n")
        self.assertEqual(run("echo $GREETING", envs={"GREETING": "hello"}).stdout, "hello\n")
        self.assertEqual(run("pwd", cwd="/tmp").stdout, "/tmp\n")
        self.assertEqual(run(["cat"], input="fed through stdin").stdout, "fed through stdin")

    def test_a_non_zero_exit_raises_with_the_output(self) -> None:
        with self.assertRaises(CommandExitError) as caught:
            self.sandbox.commands.run("echo partial; echo broken >&2; exit 3")
        err = caught.exception
        self.assertEqual(
            (err.exit_code, err.stdout, err.stderr, err.code), (3, "partial\n", "broken\n", "command_exit")
        )
        self.assertIn("exited with code 3", err.message)

    def test_the_daemon_kills_a_command_at_its_timeout(self) -> None:
        with self.assertRaises(CommandExitError) as caught:
            self.sandbox.commands.run("echo started; sleep 30", timeout=1)
        self.assertTrue(caught.exception.timed_out)
        self.assertEqual(caught.exception.stdout, "started\n")

    def test_a_background_command_killed(self) -> None:
        handle = self.sandbox.commands.run("echo waiting; sleep 300", background=True)
        self.assertIsInstance(handle, CommandHandle)
        self.assertTrue(handle.command_id.startswith("cmd-"), handle.command_id)
        time.sleep(0.3)
        self.assertTrue(handle.kill())
        result = handle.wait(allow_non_zero_exit=True, timeout=30)
        self.assertEqual((result.signal, result.exit_code, result.stdout), ("SIGKILL", 137, "waiting\n"))
        with self.assertRaises(CommandExitError) as caught:
            handle.wait()
        self.assertEqual(caught.exception.signal, "SIGKILL")
        self.assertFalse(self.sandbox.commands.kill("cmd-nosuch"))

    def test_a_background_command_fed_through_stdin(self) -> None:
        handle = self.sandbox.commands.run("cat; echo done", background=True, stdin=True)
        handle.send_stdin("hello ")
        self.sandbox.commands.send_stdin(handle.command_id, "world\n")
        handle.close_stdin()
        self.assertEqual(handle.wait(timeout=30).stdout, "hello world\ndone\n")

    def test_a_background_command_followed_with_callbacks_and_by_id(self) -> None:
        chunks: List[str] = []
        handle = self.sandbox.commands.run(
            "for i in 1 2 3; do echo $i; sleep 0.2; done", background=True, on_stdout=chunks.append
        )
        result = handle.wait(timeout=30)
        self.assertEqual(result.stdout, "1\n2\n3\n")
        self.assertEqual("".join(chunks), "1\n2\n3\n")
        replayed = self.sandbox.commands.connect(handle.command_id).wait(timeout=30)
        self.assertEqual(replayed.stdout, "1\n2\n3\n")

    def test_disconnect_stops_following_and_the_command_goes_on(self) -> None:
        chunks: List[str] = []
        handle = self.sandbox.commands.run("echo tick; sleep 300", background=True, on_stdout=chunks.append)
        deadline = time.monotonic() + 30
        while not chunks and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(chunks, ["tick\n"])
        handle.disconnect()
        with self.assertRaises(ForkdError) as caught:
            handle.wait(timeout=30)
        self.assertEqual(caught.exception.code, "aborted")
        again = self.sandbox.commands.connect(handle.command_id)
        self.assertTrue(again.kill())
        self.assertEqual(again.wait(allow_non_zero_exit=True, timeout=30).signal, "SIGKILL")


if __name__ == "__main__":
    unittest.main()
