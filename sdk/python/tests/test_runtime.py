# The warm Python runtime of python-numpy VMs: eval's JSON values and
# SandboxEvalError, and the time-travel fork: children that each see their
# variant through eval and $NAME in a command, a kept intermediate snapshot,
# and best of k ranked by an eval score and by an exec score. One source
# sandbox serves every test (VMs are slow to restore without KVM).
"""Eval, fork with variants, and best of k."""

from __future__ import annotations

import unittest
import uuid

from support import PYTHON_TAG, DaemonTestCase

from forkd import ForkedSandbox, NotFoundError, Sandbox, SandboxEvalError


class RuntimeTest(DaemonTestCase):
    """One python-numpy source sandbox, forked by every test."""

    source: Sandbox

    @classmethod
    def setUpClass(cls) -> None:
        cls.source = cls.shared(PYTHON_TAG)
        # State the source builds after its restore: its children start from it.
        cls.source.eval("progress = 41")
        cls.source.commands.run("echo built > /root/setup-done")

    def test_eval_returns_json_values(self) -> None:
        self.assertEqual(self.source.eval("progress + 1"), 42)
        self.assertEqual(self.source.eval("numpy.arange(3).tolist()"), [0, 1, 2])
        self.assertEqual(self.source.eval("{'a': [1.5, None, True]}"), {"a": [1.5, None, True]})
        raw = self.controller.eval_code(self.source.id, "[1, 'two']")
        self.assertEqual((raw["value"], raw["result"], raw["error"]), ([1, "two"], "[1, 'two']", None))

    def test_eval_raises_the_guest_traceback(self) -> None:
        with self.assertRaises(SandboxEvalError) as caught:
            self.source.eval("1 / 0")
        err = caught.exception
        self.assertIn("ZeroDivisionError", err.traceback)
        self.assertIn("ZeroDivisionError", err.message)
        self.assertEqual((err.code, err.status), ("eval_error", 200))
        self.assertEqual(self.source.eval("progress"), 41, "the runtime goes on after an error")

    def test_fork_hands_each_child_its_variant_and_keeps_the_snapshot(self) -> None:
        tag = f"test-pysdk-fork-{uuid.uuid4().hex[:8]}"
        self.addCleanup(self.controller.delete_snapshot, tag, force=True)
        children = self.source.fork(
            2, vary={"temperature": [0.2, 0.7], "NAME": ["a", "b"]}, tag=tag, keep_snapshot=True
        )
        self.track(children)
        self.assertEqual(
            [c.variant for c in children], [{"temperature": 0.2, "NAME": "a"}, {"temperature": 0.7, "NAME": "b"}]
        )
        self.assertIn(tag, [s["tag"] for s in self.controller.list_snapshots()])
        draws = set()
        for child in children:
            self.assertIsInstance(child, ForkedSandbox)
            self.assertEqual((child.score, child.kept), (None, None))
            progress, temperature, name, vary, draw = child.eval(
                "[progress + 1, temperature, NAME, vary, __import__('random').random()]"
            )
            self.assertEqual(
                [progress, temperature, name, vary],
                [42, child.variant["temperature"], child.variant["NAME"], child.variant],
            )
            draws.add(draw)
            shell = child.commands.run('echo "$NAME $temperature"; cat /root/setup-done').stdout
            self.assertEqual(shell, f"{child.variant['NAME']} {child.variant['temperature']}\nbuilt\n")
        self.assertEqual(len(draws), 2, "each child has its own random numbers")
        self.assertEqual(self.source.eval("'NAME' in globals()"), False, "the source has no variant")

    def test_best_of_by_an_eval_score_keeps_the_best(self) -> None:
        ranked = self.source.best_of(2, vary={"SEED": [4, 8]}, score="SEED * 2 + progress - 41")
        self.track(ranked)
        self.assertEqual([(c.variant["SEED"], c.score, c.kept) for c in ranked], [(8, 16, True), (4, 8, False)])
        self.assertEqual(ranked[0].eval("SEED"), 8)
        with self.assertRaises(NotFoundError):
            ranked[1].get_info()

    def test_best_of_by_an_exec_score_keeps_two(self) -> None:
        ranked = self.source.best_of(
            3,
            vary=[{"SEED": "7"}, {"SEED": "x"}, {"SEED": "2"}],
            score=["sh", "-c", 'echo scoring; echo "$SEED"'],
            keep=2,
        )
        self.track(ranked)
        self.assertEqual(
            [(c.variant["SEED"], c.score, c.kept) for c in ranked], [("7", 7, True), ("2", 2, True), ("x", None, False)]
        )
        self.assertIn("not a number", ranked[2].score_error or "")
        self.assertEqual(ranked[1].commands.run("echo $SEED").stdout, "2\n")
        with self.assertRaises(NotFoundError):
            ranked[2].get_info()


if __name__ == "__main__":
    unittest.main()
