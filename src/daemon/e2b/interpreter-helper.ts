// The Python half of the code interpreter: a helper the daemon sends into
// the sandbox's warm runtime with each call. It installs itself once (in
// sys.modules, under a name carrying a hash of its source) and keeps E2B's
// code contexts: the default one is the runtime's globals, every other one a
// namespace of its own with its own working directory and execution count.
import { createHash } from 'node:crypto';

// The helper, run inside the runtime. Kept in this file as text because it
// travels with each call; its name carries a hash of itself, so a daemon
// with a different helper installs its own beside an older one (whose
// contexts it does not see).
const HELPER_SOURCE = String.raw`"""E2B code contexts inside forkd's warm Python runtime (installed by the daemon).

The default context is the runtime's own globals; every other context is a
namespace kept here, with its own working directory and execution count.
The state lives in this process, so a snapshot's children inherit it.
"""
import ast
import base64
import builtins
import inspect
import json
import linecache
import os
import sys
import traceback

HOME = "/home/user"  # E2B_HOME (target.ts): where the default context runs
MAX_TEXT = 1 << 20  # characters of a result's text
MAX_FORMAT = 2 << 20  # characters of one rich format
MAX_RESULT = 6 << 20  # the runtime returns no value past 8 MiB of JSON
# IPython's display methods, by the name E2B gives the format.
RICH = (
    ("html", "_repr_html_"),
    ("markdown", "_repr_markdown_"),
    ("svg", "_repr_svg_"),
    ("png", "_repr_png_"),
    ("jpeg", "_repr_jpeg_"),
    ("pdf", "_repr_pdf_"),
    ("latex", "_repr_latex_"),
    ("json", "_repr_json_"),
    ("javascript", "_repr_javascript_"),
)
# The first line of the daemon's call code: its linecache entries are dropped.
CALL_MARK = "# forkd e2b call"


class Reply(dict):
    """A call's answer. The runtime keeps the repr of the last value: this one is short."""

    def __repr__(self):
        return "<forkd e2b reply>"


class Context:
    def __init__(self, cid, cwd, ns):
        self.id, self.home, self.cwd, self.ns, self.count = cid, cwd, cwd, ns, 0

    def info(self):
        return {"id": self.id, "language": "python", "cwd": self.cwd}


DEFAULT = Context("default", HOME, None)
default_last = None  # the default context's _ (the runtime binds _ to each Reply)
contexts = {}
cells = 0
loop = None
sandbox_env_set = False


class Tee:
    """sys.stdout/stderr during a cell: the runtime's capture (the reply's
    whole output) and, line by line, the spool the daemon reads while the
    cell runs, as JSON lines {"s": "o"|"e", "t": text}."""

    def __init__(self, capture, spool, stream):
        self.capture, self.spool, self.stream = capture, spool, stream
        self.pending = ""

    def write(self, text):
        self.capture.write(text)
        if self.spool is not None:
            self.pending += text
            if "\n" in self.pending:
                done, _, self.pending = self.pending.rpartition("\n")
                self.send(done + "\n")
        return len(text)

    def send(self, text):
        try:
            self.spool.write(json.dumps({"s": self.stream, "t": text}) + "\n")
            self.spool.flush()
        except (OSError, ValueError):
            self.spool = None  # the spool is only for live output; the reply has it all

    def flush(self):
        if self.spool is not None and self.pending:
            self.send(self.pending)
            self.pending = ""

    def isatty(self):
        return False

    def __getattr__(self, name):
        return getattr(self.capture, name)


def open_spool(path):
    if not path:
        return None
    try:
        return open(path, "w", encoding="utf-8")
    except OSError:
        return None


def close_spool(spool, path):
    if spool is None:
        return
    try:
        spool.close()
        os.unlink(path)
    except OSError:
        pass


def fresh_namespace():
    return {"__name__": "__main__", "__builtins__": builtins}


def truncate(text, limit):
    if len(text) <= limit:
        return text
    return text[:limit] + "\n... [truncated %d characters]" % (len(text) - limit)


def json_data(value, limit):
    try:
        text = json.dumps(value, allow_nan=False)
    except Exception:
        return None
    return json.loads(text) if len(text) <= limit else None


def compile_cell(code):
    """The cell's statements and, when it ends in an expression, that expression."""
    global cells
    cells += 1
    name = "<cell-%d>" % cells
    linecache.cache[name] = (len(code), None, code.splitlines(True), name)
    tree = ast.parse(code, name, "exec")
    last = None
    # A trailing semicolon hides the value, as in a notebook.
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not code.rstrip().endswith(";"):
        last = ast.Expression(tree.body.pop().value)
    flags = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
    body = compile(tree, name, "exec", flags=flags)
    expr = compile(last, name, "eval", flags=flags) if last is not None else None
    return name, body, expr


def run(code, ns):
    """Evaluates compiled code; a top-level await runs on this runtime's own event loop."""
    global loop
    value = eval(code, ns)
    if code.co_flags & inspect.CO_COROUTINE:
        import asyncio

        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
        value = loop.run_until_complete(value)
    return value


def rich(value, method):
    fn = getattr(value, method, None)
    if not callable(fn):
        return None
    try:
        data = fn()
    except Exception:
        return None
    if isinstance(data, tuple) and len(data) == 2:  # (data, metadata)
        data = data[0]
    if method == "_repr_json_":
        return json_data(data, MAX_FORMAT)
    if isinstance(data, (bytes, bytearray)):
        data = base64.b64encode(data).decode("ascii")
    return data if isinstance(data, str) and len(data) <= MAX_FORMAT else None


def formats(value):
    """The value as E2B's result formats: its repr, and what its display methods give."""
    out = {"text": truncate(repr(value), MAX_TEXT)}
    if not isinstance(value, type):
        for key, method in RICH:
            data = rich(value, method)
            if data is not None:
                out[key] = data
    if "json" not in out and isinstance(value, (dict, list)):
        data = json_data(value, MAX_FORMAT)
        if data is not None:
            out["json"] = data
    if len(json.dumps(out)) > MAX_RESULT:
        out = {"text": out["text"]}
    return out


def error_of(exc, cell):
    """E2B's error: the exception's name, message and traceback from the cell's frames on."""
    if isinstance(exc, SyntaxError):
        text = "".join(traceback.format_exception_only(type(exc), exc))
    else:
        tb = exc.__traceback__
        start = tb
        while start is not None and start.tb_frame.f_code.co_filename != cell:
            start = start.tb_next
        text = "".join(traceback.format_exception(type(exc), exc, start or tb))
    try:
        value = str(exc)
    except Exception:
        value = "<exception str() failed>"
    return {"name": type(exc).__name__, "value": value, "traceback": truncate(text, MAX_TEXT)}


def find(cid):
    return DEFAULT if cid in (None, "", DEFAULT.id) else contexts.get(cid)


def missing(cid):
    return Reply(status=404, message="context %s not found" % cid)


def set_env(env):
    """Sets variables; returns what they were, for restore_env."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    return saved


def restore_env(saved):
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def chdir(path):
    try:
        os.chdir(path)
    except OSError:
        pass  # a context whose directory went away runs where the runtime is


def execute(g, req):
    global default_last, sandbox_env_set
    ctx = find(req.get("context"))
    if ctx is None:
        return missing(req.get("context"))
    ns = g if ctx is DEFAULT else ctx.ns
    if ctx is DEFAULT and isinstance(g.get("_"), Reply):
        if default_last is None:
            del g["_"]
        else:
            g["_"] = default_last
    # The sandbox's variables are set once and stay, as E2B does; a call's only for the call.
    if not sandbox_env_set:
        os.environ.update(req.get("sandbox_env") or {})
        sandbox_env_set = True
    try:
        back = os.getcwd()
    except OSError:
        back = "/"
    saved = set_env(req.get("env") or {})
    chdir(ctx.cwd)
    ctx.count += 1
    result = error = None
    cell = None
    spool = open_spool(req.get("spool"))
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Tee(streams[0], spool, "o"), Tee(streams[1], spool, "e")
    try:
        try:
            cell, body, expr = compile_cell(req["code"])
            run(body, ns)
            if expr is not None:
                value = run(expr, ns)
                if value is not None:
                    if ctx is DEFAULT:
                        default_last = value
                    else:
                        ns["_"] = value
                    result = formats(value)
        except BaseException as e:  # SystemExit and KeyboardInterrupt too: the runtime stays up
            error = error_of(e, cell)
        try:
            ctx.cwd = os.getcwd()  # a cell's chdir stays with its context
        except OSError:
            pass
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = streams
        close_spool(spool, req.get("spool"))
        restore_env(saved)
        chdir(back)
    return Reply(count=ctx.count, result=result, error=error)


def create(g, req):
    cwd = req["cwd"]
    if not os.path.isdir(cwd):
        return Reply(status=400, message="cwd %s is not a directory in the sandbox" % cwd)
    ctx = contexts[req["id"]] = Context(req["id"], cwd, fresh_namespace())
    return Reply(context=ctx.info())


def listing(g, req):
    return Reply(contexts=[DEFAULT.info()] + [c.info() for c in contexts.values()])


def remove(g, req):
    if contexts.pop(req["id"], None) is None:
        return missing(req["id"])
    return Reply()


def restart(g, req):
    ctx = contexts.get(req["id"])
    if ctx is None:
        return missing(req["id"])
    ctx.ns, ctx.count, ctx.cwd = fresh_namespace(), 0, ctx.home
    return Reply()


OPS = {"execute": execute, "create": create, "list": listing, "remove": remove, "restart": restart}


def forget_calls():
    """The runtime keeps each eval's source for tracebacks; the daemon's call code needs none."""
    for key in [k for k, v in linecache.cache.items() if len(v) == 4 and v[2] and v[2][0].startswith(CALL_MARK)]:
        del linecache.cache[key]


def call(g, request):
    forget_calls()
    req = json.loads(base64.b64decode(request).decode("utf-8"))
    return OPS[req["op"]](g, req)
`;

const HELPER_NAME = `_forkd_e2b_${createHash('sha256').update(HELPER_SOURCE).digest('hex').slice(0, 12)}`;
const HELPER_B64 = Buffer.from(HELPER_SOURCE).toString('base64');

/** A request to the helper: the operation and its arguments. */
export type HelperRequest =
  | {
      op: 'execute';
      context: string | null;
      code: string;
      env: Record<string, string>;
      sandbox_env: Record<string, string>;
      /** A guest file the cell's output is also written to, line by line, while it runs. */
      spool?: string;
    }
  | { op: 'create'; id: string; cwd: string }
  | { op: 'list' }
  | { op: 'remove' | 'restart'; id: string };

/**
 * The code the runtime evaluates for one helper call: a single expression
 * (so its value is the eval's result) that installs the helper if this
 * runtime has none yet and calls it. Data travels base64-encoded, so no
 * quoting of user code can go wrong.
 */
export function helperCallCode(request: HelperRequest): string {
  const req = Buffer.from(JSON.stringify(request)).toString('base64');
  const sys = "__import__('sys')";
  const install =
    `(lambda m: (exec(compile(__import__('base64').b64decode('${HELPER_B64}'), '<forkd-e2b>', 'exec'), m.__dict__), ` +
    `${sys}.modules.setdefault('${HELPER_NAME}', m))[1])(__import__('types').ModuleType('${HELPER_NAME}'))`;
  return `# forkd e2b call\n(${sys}.modules.get('${HELPER_NAME}') or ${install}).call(globals(), '${req}')\n`;
}
