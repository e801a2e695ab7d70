# The HTTP transport under Controller: builds URLs, adds the bearer token,
# puts a timeout on every request, reads JSON, raw bytes or NDJSON streams,
# and turns every non-2xx answer into a ForkdError subclass chosen by the
# body's code (errors.py). Standard library only (http.client).
"""HTTP transport for the forkd daemon's REST API."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from typing import Any, Dict, Iterator, Mapping, Optional, Union
from urllib.parse import quote, urlencode, urlsplit

from .errors import ForkdConnectionError, ForkdError, RequestTimeoutError, error_from_response, without_credentials
from .version import __version__

DEFAULT_URL = "http://127.0.0.1:8889"
"""Where the daemon listens when neither the caller nor ``FORKD_URL`` says otherwise."""

DEFAULT_TIMEOUT = 60.0
"""Seconds a request may take unless the call sets its own timeout."""

Query = Mapping[str, Union[str, int, float, bool, None]]


def env(name: str) -> Optional[str]:
    """An environment variable, None when unset or empty."""
    value = os.environ.get(name)
    return value or None


def seg(value: str) -> str:
    """``value`` escaped as one path segment."""
    return quote(value, safe="")


def _query_value(value: Union[str, int, float, bool]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Response:
    """A 2xx answer whose body is still to be read; close it (or use ``with``) when done."""

    def __init__(
        self, conn: http.client.HTTPConnection, res: http.client.HTTPResponse, url: str, deadline: float
    ) -> None:
        self._conn = conn
        self._res = res
        self.url = url
        self.status = res.status
        self._deadline = deadline

    def _guard(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise RequestTimeoutError(f"the request to {self.url} passed its deadline", url=self.url)
        sock = self._conn.sock
        if sock is not None:
            sock.settimeout(remaining)

    def read(self) -> bytes:
        """The whole body."""
        try:
            self._guard()
            return self._res.read()
        except (socket.timeout, TimeoutError) as err:
            if isinstance(err, ForkdError):
                raise
            raise RequestTimeoutError(f"no answer from {self.url} in time", url=self.url) from err
        except (OSError, http.client.HTTPException) as err:
            raise ForkdConnectionError(f"the connection to {self.url} broke: {err}", url=self.url) from err
        finally:
            self.close()

    def json(self) -> Any:
        """The body parsed as JSON (None for an empty body)."""
        raw = self.read()
        return json.loads(raw) if raw else None

    def ndjson(self) -> Iterator[Dict[str, Any]]:
        """The body as newline-delimited JSON, one value per line as the lines arrive."""
        try:
            while True:
                try:
                    self._guard()
                    line = self._res.readline()
                except (socket.timeout, TimeoutError) as err:
                    if isinstance(err, ForkdError):
                        raise
                    raise RequestTimeoutError(f"no answer from {self.url} in time", url=self.url) from err
                except (OSError, http.client.HTTPException) as err:
                    raise ForkdConnectionError(f"the connection to {self.url} broke: {err}", url=self.url) from err
                if not line:
                    return
                text = line.strip()
                if text:
                    yield json.loads(text)
        finally:
            self.close()

    def abort(self) -> None:
        """Shuts the connection down from another thread: a reader blocked on it sees the end at once."""
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Closes the connection (a stream stops, and the daemon sees the client go)."""
        self._res.close()
        self._conn.close()

    def __enter__(self) -> "Response":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HttpClient:
    """Sends requests to one daemon; every non-2xx answer raises a ForkdError subclass."""

    def __init__(self, base_url: str, token: Optional[str], timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the daemon URL must be http(s)://host[:port], got {without_credentials(base_url)!r}")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")

    def url(self, path: str, query: Optional[Query] = None) -> str:
        """The absolute URL for ``path`` under the base URL."""
        return self.base_url + self._target(path, query)

    def _target(self, path: str, query: Optional[Query]) -> str:
        pairs = [(k, _query_value(v)) for k, v in (query or {}).items() if v is not None]
        return self._prefix + path + (f"?{urlencode(pairs)}" if pairs else "")

    def auth_headers(self) -> Dict[str, str]:
        """The bearer token's header, when there is a token."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def send(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Query] = None,
        json_body: Any = None,
        data: Optional[bytes] = None,
        timeout: Optional[float] = None,
    ) -> Response:
        """Sends a request; returns a 2xx answer whose body the caller must read or close."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        target = self._target(path, query)
        url = without_credentials(self.base_url + target)
        headers = {"Accept": "application/json", "User-Agent": f"forkd-python/{__version__}", **self.auth_headers()}
        body: Optional[bytes] = None
        if json_body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(json_body).encode("utf-8")
        elif data is not None:
            headers["Content-Type"] = "application/octet-stream"
            body = data
        conn = self._connect(limit)
        try:
            conn.request(method, target, body=body, headers=headers)
            res = conn.getresponse()
        except (socket.timeout, TimeoutError) as err:
            conn.close()
            raise RequestTimeoutError(f"no answer from {url} within {limit:g} s", url=url) from err
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise ForkdConnectionError(f"cannot reach the forkd daemon at {url}: {err}", url=url) from err
        answer = Response(conn, res, url, deadline)
        if not 200 <= res.status < 300:
            try:
                raw = answer.read()
            except ForkdError:
                raw = b""
            raise error_from_response(res.status, res.reason, raw, url)
        return answer

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request whose 2xx answer is JSON."""
        return self.send(method, path, **kwargs).json()

    def empty(self, method: str, path: str, **kwargs: Any) -> None:
        """A request whose 2xx answer has no body worth reading (204)."""
        self.send(method, path, **kwargs).read()
