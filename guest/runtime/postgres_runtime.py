"""Warm PostgreSQL runtime for forkd-agent's EVAL: SQL in, rows out.

Started by the agent before the parent VM is snapshotted (runtime kind
"postgres"). It starts the image's PostgreSQL cluster (Debian's, the first
one pg_lsclusters lists) unless it is running, waits until it accepts
connections, drops root for the cluster's owner and opens one psycopg2
connection, as that owner, to the database "postgres" over the local unix
socket. Only then does it say "ready", so a recipe's warm-up steps (loading a
schema) run against a running server and every child starts with it warm.

The channel is python_runtime.py's (copied beside this file): u32le-length
messages on FORKD_RUNTIME_FDS, "ready" or "failed\\n<traceback>" first, then
one JSON head {result, repr, error, exit_code[, stdout][, stderr]} per
request. A request is SQL text: one or more statements, split the way psql
splits them and run one by one in autocommit mode on the same session, so a
BEGIN, a SET or a temp table made by one eval is there in the next.

- result: the rows of the last statement that returned rows, as a list of
  objects keyed by column name (duplicate names get _2, _3...); if none did,
  {"command": tag, "rowcount": n} of the last statement (rowcount only when
  the server counted rows); null for text with no statement.
- repr: a psql-like transcript: each statement's table or command tag.
- error: the server's message (with LINE and caret) of the first statement
  that failed; exit_code 1. Statements before it stay done (autocommit), the
  ones after it do not run, and the session goes on as psql's would.
- stderr: the server's notices and warnings (RAISE NOTICE ...).
"""

import datetime
import decimal
import json
import math
import os
import pwd
import random
import re
import subprocess
import sys
import time
import traceback
from collections import namedtuple

import psycopg2

from python_runtime import (
    MAX_CAPTURE,
    MAX_REPR,
    json_value,
    open_channel,
    send,
    send_failed,
    serve,
    truncate,
)

# The daemon waits at most this long for an eval; a statement that runs
# longer is cancelled by the server (a session may SET its own).
STATEMENT_TIMEOUT_MS = 300_000
STARTUP_TIMEOUT_SECS = 120
MAX_TABLE_ROWS = 1000  # rows of one table shown in repr (result has them all)
SOCKET_DIR = "/var/run/postgresql"
DATABASE = "postgres"


# --- Splitting SQL text into statements -----------------------------------

WORD = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
ROUTINE_HEADS = (["create", "function"], ["create", "procedure"],
                 ["create", "or", "replace", "function"], ["create", "or", "replace", "procedure"])


def skip_quoted(text, i, quote, backslash):
    """Index just past the quoted literal or identifier that starts at text[i]."""
    i += 1
    while i < len(text):
        c = text[i]
        if backslash and c == "\\":
            i += 2
        elif c == quote:
            if text.startswith(quote, i + 1):  # '' or "" is the quote itself
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return i  # unterminated: the server will say so


def split_sql(text):
    """The statements of SQL text, cut at top-level semicolons as psql cuts them.

    Semicolons inside quotes, E'' strings, dollar quotes, comments (nested
    /* */ too), parentheses and the BEGIN ... END body of a CREATE FUNCTION or
    PROCEDURE (SQL-standard bodies; psql's own heuristic) do not end a
    statement. Pieces with only blanks and comments are dropped.
    """
    statements = []
    start = i = 0
    n = len(text)
    parens = begins = 0
    has_code = False
    words = []  # the piece's first words, lower case, to recognise CREATE FUNCTION
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            continue
        if c == ";" and parens == 0 and begins == 0:
            if has_code:
                statements.append(text[start:i].strip())
            start, has_code, words = i + 1, False, []
            i += 1
            continue
        has_code = has_code or not c.isspace()
        if c in "'\"":
            i = skip_quoted(text, i, c, False)
            continue
        if c == "$":
            tag = DOLLAR_TAG.match(text, i)
            if tag:
                end = text.find(tag.group(0), tag.end())
                i = n if end < 0 else end + len(tag.group(0))
                continue
        word = WORD.match(text, i)
        if word:
            i = word.end()
            w = word.group(0).lower()
            if w == "e" and text.startswith("'", i):  # E'...': backslash escapes
                i = skip_quoted(text, i, "'", True)
                continue
            if len(words) < 4:
                words.append(w)
            if parens == 0 and any(words[: len(h)] == h for h in ROUTINE_HEADS):
                if w == "begin" or (w == "case" and begins):
                    begins += 1
                elif w == "end" and begins:
                    begins -= 1
            continue
        if c == "(":
            parens += 1
        elif c == ")":
            parens = max(0, parens - 1)
        i += 1
    if has_code:
        statements.append(text[start:].strip())
    return statements


# --- Values and tables ------------------------------------------------------


def json_cell(value):
    """A column value as plain JSON data: numbers stay numbers when exact."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):  # NaN and the infinities are not JSON: postgres's words for them
        return value if math.isfinite(value) else {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[str(value)]
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        if value == value.to_integral_value():
            return int(value)
        f = float(value)
        # numeric is exact; a float is only when it reads back the same.
        return f if decimal.Decimal(repr(f)) == value else str(value)
    if isinstance(value, (datetime.date, datetime.time, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [json_cell(v) for v in value]
    if isinstance(value, dict):  # json and jsonb, already parsed by psycopg2
        return {str(k): json_cell(v) for k, v in value.items()}
    return str(value)  # interval, uuid, inet, ranges...


def text_cell(value):
    """A column value as psql would show it in a table (close enough to read)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (bytes, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return "{" + ",".join("NULL" if v is None else text_cell(v) for v in value) + "}"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value).replace("\n", "\\n")


def is_number(value):
    return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)


def column_keys(names):
    """Keys for row objects: a repeated column name gets _2, _3..."""
    keys, seen = [], {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else "%s_%d" % (name, seen[name]))
    return keys


def format_table(names, rows):
    """psql's aligned format: header, rule, rows (numbers right-aligned), row count."""
    shown = rows[:MAX_TABLE_ROWS]
    cells = [[text_cell(v) for v in row] for row in shown]
    widths = [len(name) for name in names]
    for row in cells:
        for k, cell in enumerate(row):
            widths[k] = max(widths[k], len(cell))
    right = [any(is_number(row[k]) for row in shown) for k in range(len(names))]
    lines = [" " + " | ".join(name.center(w) for name, w in zip(names, widths)),
             "+".join("-" * (w + 2) for w in widths)]
    for row in cells:
        lines.append(" " + " | ".join(cell.rjust(w) if right[k] else cell.ljust(w)
                                      for k, (cell, w) in enumerate(zip(row, widths))))
    lines = [line.rstrip() for line in lines]
    if len(rows) > len(shown):
        lines.append("... (%d more rows not shown)" % (len(rows) - len(shown)))
    lines.append("(%d row%s)" % (len(rows), "" if len(rows) == 1 else "s"))
    return "\n".join(lines)


def join_transcript(items):
    """(text, is_table) pairs as psql prints them: a blank line around each table."""
    out = []
    for k, (text, table) in enumerate(items):
        if k:
            out.append("\n\n" if table or items[k - 1][1] else "\n")
        out.append(text)
    return "".join(out)


# --- The server and the session ----------------------------------------------


Cluster = namedtuple("Cluster", "version name port owner online")


def first_cluster():
    """The first cluster pg_lsclusters lists (Debian's postgresql-common)."""
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.split()  # version, name, port, status, owner, data dir, log
        if len(fields) >= 5:
            return Cluster(fields[0], fields[1], int(fields[2]), fields[4], fields[3].startswith("online"))
    raise RuntimeError("this image has no PostgreSQL cluster (pg_lsclusters lists none)")


def start_server(cluster):
    """pg_ctlcluster start (it waits for the server); an error carries its output."""
    r = subprocess.run(["pg_ctlcluster", cluster.version, cluster.name, "start"], capture_output=True,
                       text=True, timeout=STARTUP_TIMEOUT_SECS)
    if r.returncode != 0 and "already running" not in r.stderr:
        raise RuntimeError("pg_ctlcluster %s %s start exited %d: %s"
                           % (cluster.version, cluster.name, r.returncode, (r.stdout + r.stderr).strip()))


def drop_root(owner):
    """Become the cluster's owner: the socket's peer authentication knows it as a superuser."""
    if os.getuid() != 0:
        return
    entry = pwd.getpwnam(owner)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ["HOME"] = entry.pw_dir
    os.chdir(entry.pw_dir)


class Notices:
    """Collects the session's notices (psycopg2 appends them here)."""

    def __init__(self):
        self.items, self.size = [], 0

    def append(self, text):
        if self.size < MAX_CAPTURE:
            self.items.append(text)
            self.size += len(text)

    def take(self):
        text = "".join(self.items)
        self.items, self.size = [], 0
        return truncate(text, MAX_CAPTURE)


class Session:
    def __init__(self, cluster):
        self.cluster = cluster
        self.conn = None
        self.notices = Notices()
        self.evals = 0  # evals this session has run: 0 means nothing of its state is the user's

    def connect(self, timeout=STARTUP_TIMEOUT_SECS):
        """A new session, retrying while the server starts up."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = psycopg2.connect(
                    host=SOCKET_DIR,
                    port=self.cluster.port,
                    dbname=DATABASE,
                    user=self.cluster.owner,
                    application_name="forkd",
                    options="-c statement_timeout=%d" % STATEMENT_TIMEOUT_MS,
                    connect_timeout=10,
                )
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        conn.autocommit = True  # psql's default: BEGIN ... COMMIT when the user says so
        conn.notices = self.notices
        self.conn, self.evals = conn, 0

    def reseed(self):
        """A child's first eval: its session must not draw the parent's random numbers.

        A session nothing has been done in yet is replaced by a new one: a new
        backend seeds random() and OpenSSL (gen_random_uuid) from the child's
        reseeded kernel. A used one (a live branch) keeps its state and
        reseeds random() only; OpenSSL's stream stays the parent's.
        """
        if self.evals == 0:
            self.conn.close()
            self.connect(timeout=30)
        else:
            with self.conn.cursor() as cur:
                cur.execute("SELECT setseed(%s)", (random.SystemRandom().uniform(-1, 1),))

    def run(self, code):
        head = {"result": None, "repr": None, "error": None, "exit_code": 0}
        if self.conn is None or self.conn.closed:
            try:
                self.connect(timeout=30)
            except Exception as e:
                return dict(head, error="cannot connect to the server: %s" % e, exit_code=1)
        self.evals += 1
        transcript = []
        rows_result = command_result = None
        try:
            with self.conn.cursor() as cur:
                for statement in split_sql(code):
                    cur.execute(statement)
                    if cur.description is not None:
                        names = [d.name for d in cur.description]
                        rows = cur.fetchall()
                        keys = column_keys(names)
                        rows_result = [{k: json_cell(v) for k, v in zip(keys, row)} for row in rows]
                        transcript.append((format_table(names, rows), True))
                    else:
                        command_result = {"command": cur.statusmessage}
                        if cur.rowcount >= 0:
                            command_result["rowcount"] = cur.rowcount
                        transcript.append((cur.statusmessage or "", False))
        except psycopg2.Error as e:
            head["error"] = e.pgerror or "%s: %s\n" % (type(e).__name__, e)
            if self.conn.closed:
                head["error"] += "(the connection to the server was lost: the next eval starts a new session)\n"
            head["exit_code"] = 1
        if transcript:
            head["repr"] = truncate(join_transcript(transcript), MAX_REPR)
        if head["exit_code"] == 0:
            head["result"] = json_value(rows_result if rows_result is not None else command_result)
        notices = self.notices.take()
        if notices:
            head["stderr"] = notices
        return head


def main():
    in_fd, out_fd = open_channel()
    try:
        cluster = first_cluster()
        if not cluster.online:
            start_server(cluster)
        drop_root(cluster.owner)
        session = Session(cluster)
        session.connect()
        # Warm the session: the catalog caches a first query fills.
        with session.conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_class")
    except BaseException:
        send_failed(out_fd)
        return 1
    send(out_fd, b"ready")

    def evaluate(code, reseed):
        if reseed and session.conn is not None and not session.conn.closed:
            try:
                session.reseed()
            except psycopg2.Error:
                pass  # the eval itself reports a broken session
        try:
            return session.run(code)
        except Exception:  # a bug here must not end the session (and its open transaction)
            return {"result": None, "repr": None, "exit_code": 1,
                    "error": "postgres_runtime failed:\n" + traceback.format_exc()}

    return serve(in_fd, out_fd, evaluate)


if __name__ == "__main__":
    sys.exit(main())
