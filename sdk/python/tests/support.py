# Shared set-up for the SDK's tests: puts the SDK on sys.path, reads where
# the daemon under test is (the node test test/sdk-python starts it), and a
# TestCase base that kills every sandbox a test creates.
"""Test support: the daemon under test and sandbox clean-up."""

from __future__ import annotations

import os
import sys
import unittest
from typing import Any, Callable, Iterable, Optional, Type

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from forkd import Controller, ForkdError, NotFoundError, Sandbox  # noqa: E402

DAEMON_URL: Optional[str] = os.environ.get("FORKD_URL") or None
"""The daemon the tests talk to; without it the tests that need one are skipped."""

TINY_TAG = os.environ.get("FORKD_TEST_TINY_TAG", "tiny")
"""A snapshot of the tiny recipe (no eval runtime)."""

PYTHON_TAG = os.environ.get("FORKD_TEST_PYTHON_TAG", "python-numpy")
"""A snapshot of the python-numpy recipe (a warm Python runtime)."""

GUARDED_URL: Optional[str] = os.environ.get("FORKD_TEST_GUARDED_URL") or None
"""A second daemon that wants a bearer token."""

GUARDED_TOKEN: Optional[str] = os.environ.get("FORKD_TEST_GUARDED_TOKEN") or None
"""That daemon's token."""


def kill_quietly(sandbox: Sandbox) -> None:
    """Kills a sandbox unless it is already gone."""
    try:
        sandbox.kill()
    except NotFoundError:
        pass


class DaemonTestCase(unittest.TestCase):
    """A test against the daemon at FORKD_URL; every sandbox it makes is killed after it."""

    def setUp(self) -> None:
        if DAEMON_URL is None:
            self.skipTest("FORKD_URL is not set: no daemon to test against")
        self.controller = Controller(DAEMON_URL)

    def create(self, tag: str, **kwargs: Any) -> Sandbox:
        """A new sandbox of ``tag``, killed when the test ends."""
        sandbox = Sandbox.create(tag, url=DAEMON_URL, **kwargs)
        self.addCleanup(kill_quietly, sandbox)
        return sandbox

    @classmethod
    def shared(cls, tag: str) -> Sandbox:
        """A sandbox of ``tag`` for every test of the class (call from setUpClass), killed after them."""
        if DAEMON_URL is None:
            raise unittest.SkipTest("FORKD_URL is not set: no daemon to test against")
        sandbox = Sandbox.create(tag, url=DAEMON_URL)
        cls.addClassCleanup(kill_quietly, sandbox)
        return sandbox

    def track(self, sandboxes: Iterable[Sandbox]) -> None:
        """Kills these sandboxes (fork children) when the test ends."""
        for sandbox in sandboxes:
            self.addCleanup(kill_quietly, sandbox)

    def assert_raises_code(
        self, cls: Type[ForkdError], code: str, status: Optional[int], call: Callable[[], Any]
    ) -> ForkdError:
        """Asserts ``call`` raises ``cls`` with this code and status; returns the error."""
        with self.assertRaises(cls) as caught:
            call()
        err: ForkdError = caught.exception
        self.assertIsInstance(err, ForkdError)
        self.assertEqual(err.code, code, err.message)
        self.assertEqual(err.status, status, err.message)
        self.assertTrue(err.message)
        return err
