# The typed errors: rebuilt from the wire's code and status (without a
# daemon), and raised by a real daemon for a 404, a 400, a 409 and a 401;
# plus transport failures (refused connection, request deadline).
"""Error classes and their codes."""

from __future__ import annotations

import os
import socket
import threading
import unittest
from unittest import mock

from support import GUARDED_TOKEN, GUARDED_URL, TINY_TAG, DaemonTestCase

from forkd import (
    AgentUnavailableError,
    AlreadyExistsError,
    AuthenticationError,
    ConflictError,
    Controller,
    ForkdConnectionError,
    ForkdError,
    ForkdTimeoutError,
    InvalidArgumentError,
    NotFoundError,
    RequestTimeoutError,
    Sandbox,
    UnauthorizedError,
)
from forkd.errors import error_from_event, error_from_response


class ErrorMappingTest(unittest.TestCase):
    """How answers become error classes (no daemon needed)."""

    def test_code_picks_the_class(self) -> None:
        err = error_from_response(
            404, "Not Found", b'{"error": "sandbox \\"x\\" not found", "code": "not_found"}', "http://h/v1"
        )
        self.assertIsInstance(err, NotFoundError)
        self.assertEqual((err.code, err.status, err.message), ("not_found", 404, 'sandbox "x" not found'))
        taken = error_from_response(409, "Conflict", b'{"error": "taken", "code": "already_exists"}', "http://h/v1")
        self.assertIsInstance(taken, AlreadyExistsError)
        self.assertIsInstance(taken, ConflictError)

    def test_unknown_code_is_classed_by_status_and_kept(self) -> None:
        err = error_from_response(409, "Conflict", b'{"error": "new kind", "code": "brand_new"}', "http://h/v1")
        self.assertIsInstance(err, ConflictError)
        self.assertEqual(err.code, "brand_new")
        internal = error_from_response(
            500, "Internal Server Error", b'{"error": "boom", "code": "vm_exited"}', "http://h"
        )
        self.assertIs(type(internal), ForkdError)

    def test_an_answer_without_json_gets_the_status_code_and_line(self) -> None:
        err = error_from_response(502, "Bad Gateway", b"<html>proxy</html>", "http://user:secret@h:1/v1/x")
        self.assertIsInstance(err, AgentUnavailableError)
        self.assertEqual(err.code, "agent_unavailable")
        self.assertEqual(err.message, "502 Bad Gateway from http://h:1/v1/x")
        self.assertNotIn("secret", str(err.url))
        self.assertEqual(err.body, "<html>proxy</html>")

    def test_stream_error_events_and_aliases(self) -> None:
        err = error_from_event({"type": "error", "error": "sandbox died"}, "http://h")
        self.assertEqual((type(err), err.status, err.code), (ForkdError, 200, "internal"))
        self.assertIs(UnauthorizedError, AuthenticationError)
        self.assertTrue(issubclass(ForkdTimeoutError, TimeoutError))
        self.assertTrue(issubclass(ForkdConnectionError, ConnectionError))


class TransportErrorTest(unittest.TestCase):
    """Failures with no answer from a daemon."""

    def test_a_refused_connection(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # nothing listens once it is closed
        with self.assertRaises(ForkdConnectionError) as caught:
            Controller(f"http://127.0.0.1:{port}").health()
        self.assertEqual((caught.exception.code, caught.exception.status), ("connection_failed", None))

    def test_every_request_has_a_deadline(self) -> None:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        accepted = []
        thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
        thread.start()
        try:
            with self.assertRaises(RequestTimeoutError) as caught:
                Controller(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=0.5).list_sandboxes()
            self.assertIsInstance(caught.exception, TimeoutError)
            self.assertEqual(caught.exception.code, "request_timeout")
        finally:
            thread.join(5)
            for conn in accepted:
                conn.close()
            server.close()


class DaemonErrorTest(DaemonTestCase):
    """What a real daemon answers, as classes."""

    sandbox: Sandbox

    @classmethod
    def setUpClass(cls) -> None:
        cls.sandbox = cls.shared(TINY_TAG)

    def test_404_not_found(self) -> None:
        err = self.assert_raises_code(NotFoundError, "not_found", 404, lambda: Sandbox.connect("sb-nosuch"))
        self.assertIn("sb-nosuch", err.message)
        self.assert_raises_code(NotFoundError, "not_found", 404, lambda: self.controller.snapshot_info("no-such-tag"))

    def test_400_invalid_argument(self) -> None:
        sandbox = self.sandbox
        self.assert_raises_code(InvalidArgumentError, "invalid_argument", 400, lambda: sandbox.fork(0))
        err = self.assert_raises_code(
            InvalidArgumentError, "invalid_argument", 400, lambda: sandbox.files.read("relative/path")
        )
        self.assertIn("absolute", err.message)

    def test_409_conflict_eval_without_a_runtime(self) -> None:
        self.assert_raises_code(ConflictError, "conflict", 409, lambda: self.sandbox.eval("1 + 1"))


class AuthenticationTest(unittest.TestCase):
    """A daemon started with a token file."""

    def setUp(self) -> None:
        if GUARDED_URL is None or GUARDED_TOKEN is None:
            self.skipTest("FORKD_TEST_GUARDED_URL/FORKD_TEST_GUARDED_TOKEN are not set")

    def test_401_without_or_with_the_wrong_token(self) -> None:
        with self.assertRaises(AuthenticationError) as missing:
            Controller(GUARDED_URL, token="").list_sandboxes()
        self.assertEqual((missing.exception.status, missing.exception.code), (401, "unauthorized"))
        self.assertEqual(missing.exception.message, "missing bearer token")
        with self.assertRaises(AuthenticationError) as wrong:
            Sandbox.list(url=GUARDED_URL, token="not-the-token")
        self.assertEqual(wrong.exception.message, "invalid bearer token")
        self.assertEqual(Controller(GUARDED_URL, token="").health(), {"ok": True})

    def test_the_right_token_from_the_arguments_or_the_environment(self) -> None:
        self.assertEqual(Controller(GUARDED_URL, token=GUARDED_TOKEN).list_sandboxes(), [])
        with mock.patch.dict(os.environ, {"FORKD_URL": str(GUARDED_URL), "FORKD_TOKEN": str(GUARDED_TOKEN)}):
            controller = Controller()
            self.assertEqual(controller.base_url, GUARDED_URL)
            self.assertEqual(controller.auth_headers(), {"Authorization": f"Bearer {GUARDED_TOKEN}"})
            self.assertEqual(Sandbox.list(), [])


if __name__ == "__main__":
    unittest.main()
