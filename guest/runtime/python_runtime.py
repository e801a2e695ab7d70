"""Warm Python runtime for forkd-agent's EVAL.

Started by the agent before the parent VM is snapshotted, so the recipe's
imports are already in memory in every fork. It talks to the agent over two
inherited pipes (FORKD_RUNTIME_FDS="in,out", default "3,4"); each message is
a u32 little-endian length followed by that many bytes. The first message out
is "ready" (after the imports) or "failed\\n<traceback>". Then every request
is a piece of code and every reply is the JSON head of the EVAL response:
{result, repr, error, exit_code[, stdout][, stderr]}.

Evaluation works like a REPL: globals persist across evals, and when the last
statement is an expression its value is the result. Output written to
sys.stdout/sys.stderr during an eval is captured and returned, so prints can
never reach the channel.
"""

import ast
import builtins
import io
import json
import linecache
import os
import struct
import sys
import traceback

MAX_REPR = 1 << 20  # characters of repr returned
MAX_RESULT = 8 << 20  # bytes of JSON result; bigger values return null
MAX_CAPTURE = 4 << 20  # characters of captured stdout/stderr


def read_exact(fd, n):
    chunks = []
    while n:
        b = os.read(fd, n)
        if not b:
            return None
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def recv(fd):
    head = read_exact(fd, 4)
    if head is None:
        return None
    (n,) = struct.unpack("<I", head)
    return read_exact(fd, n) if n else b""


def send(fd, data):
    msg = struct.pack("<I", len(data)) + data
    view = memoryview(msg)
    while view:
        view = view[os.write(fd, view):]


def load_imports(config_path, g):
    """Imports the config's modules into the eval globals ("numpy as np" works)."""
    if not config_path or not os.path.exists(config_path):
        return
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    for spec in config.get("imports") or []:
        name, _, alias = spec.partition(" as ")
        name, alias = name.strip(), alias.strip()
        module = __import__(name)
        if alias:
            for part in name.split(".")[1:]:
                module = getattr(module, part)
            g[alias] = module
        else:
            g[name.split(".")[0]] = module


def truncate(text, limit):
    if len(text) <= limit:
        return text
    return text[:limit] + "\n... [truncated %d characters]" % (len(text) - limit)


def format_error(exc, skip_frames):
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None:
            tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


class Evaluator:
    def __init__(self, g):
        self.g = g
        self.count = 0

    def compile(self, code):
        """Splits off a trailing expression so its value can be returned."""
        self.count += 1
        filename = "<eval-%d>" % self.count
        # Registered so tracebacks show the offending source line.
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        tree = ast.parse(code, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        body = compile(tree, filename, "exec")
        expr = compile(last, filename, "eval") if last is not None else None
        return body, expr

    def run(self, code):
        out, err = io.StringIO(), io.StringIO()
        head = {"result": None, "repr": None, "error": None, "exit_code": 0}
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            try:
                body, expr = self.compile(code)
            except SyntaxError as e:
                head["error"] = "".join(traceback.format_exception_only(type(e), e))
                head["exit_code"] = 1
            else:
                try:
                    exec(body, self.g)
                    if expr is not None:
                        value = eval(expr, self.g)
                        self.g["_"] = value
                        head["repr"] = truncate(repr(value), MAX_REPR)
                        head["result"] = json_value(value)
                except BaseException as e:  # SystemExit and KeyboardInterrupt too: the runtime stays up
                    head["error"] = format_error(e, 1)
                    head["exit_code"] = 1
        finally:
            sys.stdout, sys.stderr = saved
        if out.getvalue():
            head["stdout"] = truncate(out.getvalue(), MAX_CAPTURE)
        if err.getvalue():
            head["stderr"] = truncate(err.getvalue(), MAX_CAPTURE)
        return head


def json_value(value):
    """The value itself if it round-trips as strict JSON (no NaN), else None."""
    try:
        text = json.dumps(value, allow_nan=False)
    except Exception:
        return None
    if len(text) > MAX_RESULT:
        return None
    return json.loads(text)


# The agent prefixes the first eval after a hand-over with this: the process
# was seeded in the parent, so every child would draw the same numbers.
RESEED = b"\0reseed\n"


def reseed_generators():
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


# A time-travel fork's variant for this child, written by the host at hand-over.
VARY_FILE = "/run/forkd/vary.json"
# Names an earlier variant bound (a fork of a fork): a newer variant may rebind them.
VARIANT_NAMES = set()


def apply_variant(g):
    """Binds the child's variant in the eval namespace: `vary` (the dict) and
    each name that is an identifier the namespace and builtins do not already
    have (a variant never replaces `numpy` or `print`) or that an earlier
    variant bound. No file: not a fork with variants."""
    import keyword

    try:
        with open(VARY_FILE, encoding="utf-8") as f:
            variant = json.load(f)
    except (OSError, ValueError):
        return
    if not isinstance(variant, dict):
        return
    g["vary"] = variant
    for name, value in variant.items():
        bindable = name in VARIANT_NAMES or (name not in g and not hasattr(builtins, name))
        if name.isidentifier() and not keyword.iskeyword(name) and bindable:
            g[name] = value
            VARIANT_NAMES.add(name)


def open_channel():
    """The agent's two pipes (FORKD_RUNTIME_FDS), kept from what eval'd code starts."""
    in_fd, out_fd = (int(x) for x in os.environ.get("FORKD_RUNTIME_FDS", "3,4").split(","))
    # Children of eval'd code (os.system) must not hold the channel open.
    os.set_inheritable(in_fd, False)
    os.set_inheritable(out_fd, False)
    sys.stdin = open(os.devnull, encoding="utf-8")
    return in_fd, out_fd


def config_path():
    return os.environ.get("FORKD_RUNTIME_CONFIG") or (sys.argv[1] if len(sys.argv) > 1 else None)


def send_failed(out_fd):
    """The first message when the runtime cannot start: the current exception's traceback."""
    send(out_fd, ("failed\n" + traceback.format_exc()).encode("utf-8", "replace"))


def serve(in_fd, out_fd, evaluate):
    """Answers the agent's requests until it closes the pipe.

    evaluate(code, reseed) returns the reply head; reseed is true on the first
    eval after a hand-over (the RESEED prefix, already stripped from code).
    The other runtimes (postgres_runtime.py, jupyter_runtime.py) serve with it.
    """
    while True:
        code = recv(in_fd)
        if code is None:
            return 0
        reseed = code.startswith(RESEED)
        if reseed:
            code = code[len(RESEED):]
        head = evaluate(code.decode("utf-8", "replace"), reseed)
        try:
            data = json.dumps(head, allow_nan=False)
        except ValueError:
            head["result"] = None
            data = json.dumps(head)
        send(out_fd, data.encode("utf-8", "replace"))


def main():
    in_fd, out_fd = open_channel()
    g = {"__name__": "__main__", "__builtins__": builtins}
    try:
        load_imports(config_path(), g)
    except BaseException:
        send_failed(out_fd)
        return 1
    send(out_fd, b"ready")

    evaluator = Evaluator(g)

    def evaluate(code, reseed):
        if reseed:
            reseed_generators()
            apply_variant(g)
        return evaluator.run(code)

    return serve(in_fd, out_fd, evaluate)


if __name__ == "__main__":
    sys.exit(main())
