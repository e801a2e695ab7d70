"""Warm Jupyter runtime for forkd-agent's EVAL: each eval is a notebook cell.

Started by the agent before the parent VM is snapshotted (runtime kind
"jupyter"). It starts an IPython kernel (Debian's python3-ipykernel) as a
process of its own, connects to it with jupyter_client's blocking client
(ZeroMQ over ipc sockets in /run/forkd-jupyter), waits until it answers and
runs a first cell in it (the recipe's imports, or `pass`) before it says
"ready": every child of the snapshot starts with the kernel warm and its
modules imported. User code only ever runs in the kernel, never here. The
kernel's own stdout and stderr go to /var/log/forkd-jupyter-kernel.log.

The channel is python_runtime.py's (copied beside this file): u32le-length
messages on FORKD_RUNTIME_FDS, "ready" or "failed\\n<traceback>" first, then
one JSON head {result, repr, error, exit_code[, stdout][, stderr]} per
request. A request is the source of one cell, sent as an execute_request:

- stdout/stderr: the cell's stream output (print, warnings, subprocesses).
- result: the cell's rich outputs in nbformat's shape, without streams and
  errors: [{"output_type": "display_data" | "execute_result", "data":
  {mime: value}, ...}], or null when it displayed nothing. When that is too
  big for the reply, each output keeps only its text/plain and names the
  mime types it left out ("omitted").
- repr: the text/plain of those outputs, one per line (an output without one
  shows its mime types in brackets); null when there are none. A cell whose
  value is None has no execute_result, as in a notebook.
- error: the traceback, ANSI colours stripped; exit_code 1.

Every wait has a deadline. A cell that runs past EVAL_TIMEOUT_SECS (or the
eval_timeout_secs of /etc/forkd/jupyter.json, read at each eval) is
interrupted (SIGINT: a KeyboardInterrupt in the cell, whose state stays); a
kernel that does not stop, or dies, is replaced by a new one before the next
eval, and the reply says its state is gone.
"""

import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import time

from python_runtime import (
    MAX_CAPTURE,
    MAX_REPR,
    config_path,
    json_value,
    open_channel,
    send,
    send_failed,
    serve,
    truncate,
)

RUN_DIR = "/run/forkd-jupyter"
LOG_PATH = "/var/log/forkd-jupyter-kernel.log"
SETTINGS_PATH = "/etc/forkd/jupyter.json"
# The daemon waits at most this long for an eval.
EVAL_TIMEOUT_SECS = 300
STARTUP_TIMEOUT_SECS = 120
INTERRUPT_GRACE_SECS = 10  # after SIGINT, before the kernel counts as stuck
REPLY_TIMEOUT_SECS = 10  # for the execute_reply once the kernel went idle
POLL_SECS = 0.5  # how often a wait checks that the kernel still lives
# No history database on disk: the kernel keeps In/Out in memory only.
KERNEL_ARGS = ["--HistoryManager.hist_file=:memory:"]
# What ipykernel_launcher does, without the debugger: ipykernel skips it when
# debugpy cannot be imported, and importing it (pydevd) took a sixth of each
# kernel start under TCG. Nothing here could attach a debugger anyway.
KERNEL_LAUNCHER = """\
import sys
sys.modules["debugpy"] = None
if sys.path[0] == "":
    del sys.path[0]
from ipykernel import kernelapp
kernelapp.launch_new_instance()
"""

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")

# Run silently in the kernel on a child's first eval: the kernel seeded its
# generators in the parent, so every child would draw the same numbers.
RESEED_CELL = """\
import random as _forkd_random, sys as _forkd_sys
_forkd_random.seed()
if "numpy" in _forkd_sys.modules:
    _forkd_sys.modules["numpy"].random.seed()
del _forkd_random, _forkd_sys
"""


def eval_timeout():
    """The eval deadline in seconds: /etc/forkd/jupyter.json's, else the default."""
    try:
        with open(SETTINGS_PATH, encoding="utf-8") as f:
            value = json.load(f).get("eval_timeout_secs")
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    except (OSError, ValueError, AttributeError):
        pass
    return float(EVAL_TIMEOUT_SECS)


def config_imports():
    path = config_path()
    if not path or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("imports") or []


class Capture:
    """Text collected up to a limit; what is past it is only counted."""

    def __init__(self, limit):
        self.parts, self.size, self.limit = [], 0, limit

    def add(self, text):
        if self.size < self.limit:
            self.parts.append(text[: self.limit - self.size])
        self.size += len(text)

    def text(self):
        joined = "".join(self.parts)
        if self.size > len(joined):
            joined += "\n... [truncated %d characters]" % (self.size - len(joined))
        return joined


class Cell:
    """What the kernel said about one execute_request, in the order it said it."""

    def __init__(self):
        self.stdout, self.stderr = Capture(MAX_CAPTURE), Capture(MAX_CAPTURE)
        self.outputs = []
        self.error = None
        self.clear_pending = False

    def clear(self):
        self.stdout, self.stderr = Capture(MAX_CAPTURE), Capture(MAX_CAPTURE)
        self.outputs = []
        self.clear_pending = False

    def add(self, kind, content):
        if kind == "clear_output":
            # wait=True: clear when the next output arrives (a notebook's way to avoid flicker).
            if content.get("wait"):
                self.clear_pending = True
            else:
                self.clear()
            return
        if kind not in ("stream", "execute_result", "display_data", "update_display_data", "error"):
            return  # status, execute_input ...
        if self.clear_pending:
            self.clear()
        if kind == "stream":
            (self.stderr if content.get("name") == "stderr" else self.stdout).add(content.get("text", ""))
        elif kind == "error":
            self.error = error_text(content)
        else:
            output = {"output_type": kind, "data": content.get("data") or {}}
            if kind == "execute_result":
                output["execution_count"] = content.get("execution_count")
            if content.get("metadata"):
                output["metadata"] = content["metadata"]
            self.outputs.append(output)

    def head(self):
        head = {"result": None, "repr": None, "error": None, "exit_code": 0}
        if self.outputs:
            result = json_value(self.outputs)
            if result is None:
                result = json_value([text_only(o) for o in self.outputs])
            head["result"] = result
            head["repr"] = truncate("\n".join(output_text(o) for o in self.outputs), MAX_REPR)
        if self.error is not None:
            head["error"], head["exit_code"] = self.error, 1
        for name in ("stdout", "stderr"):
            text = getattr(self, name).text()
            if text:
                head[name] = text
        return head


def error_text(content):
    """The traceback as a terminal shows it, without its colours."""
    lines = content.get("traceback") or []
    text = "\n".join(lines) if lines else "%s: %s" % (content.get("ename"), content.get("evalue"))
    return ANSI.sub("", text) + "\n"


def output_text(output):
    data = output["data"]
    text = data.get("text/plain")
    if isinstance(text, list):  # nbformat allows multi-line strings as lists
        text = "".join(text)
    return text if text is not None else "[%s]" % ", ".join(sorted(data))


def text_only(output):
    data = output["data"]
    small = dict(output, data={k: v for k, v in data.items() if k == "text/plain"})
    small["omitted"] = sorted(k for k in data if k != "text/plain")
    small.pop("metadata", None)
    return small


class Kernel:
    """One IPython kernel process and the client side of its channels."""

    def __init__(self, imports):
        self.imports = imports
        self.proc = self.kc = self.connection_file = None
        self.lost = None  # why the kernel must be replaced before the next cell

    def start(self):
        # The kernel is started here, not by jupyter_client's KernelManager:
        # its kernelspec and provisioner lookup cost 12 s of each start under
        # TCG, and a kernel with a known command needs neither.
        from jupyter_client.blocking import BlockingKernelClient
        from jupyter_client.connect import write_connection_file

        os.makedirs(RUN_DIR, mode=0o700, exist_ok=True)
        # ipc: unix sockets, no ports on the guest's loopback to collide with.
        self.connection_file, _ = write_connection_file(
            os.path.join(RUN_DIR, "kernel-%d.json" % time.monotonic_ns()),
            transport="ipc",
            ip=os.path.join(RUN_DIR, "kernel"),
            key=secrets.token_hex(32).encode(),
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("FORKD_")}
        # The kernel exits by itself once this process is gone (ipykernel polls its parent).
        env["JPY_PARENT_PID"] = str(os.getpid())
        with open(LOG_PATH, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", KERNEL_LAUNCHER, "-f", self.connection_file, *KERNEL_ARGS],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                cwd=os.environ.get("HOME", "/"),
                start_new_session=True,  # an interrupt goes to the cell's subprocesses too, never here
            )
        self.lost = None
        kc = BlockingKernelClient()
        kc.load_connection_file(self.connection_file)
        # No heartbeat thread: the process's exit status tells a dead kernel.
        kc.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
        self.kc = kc
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECS
        while True:
            try:
                kc.wait_for_ready(timeout=2)
                break
            except RuntimeError:
                if not self.alive():
                    raise RuntimeError("the kernel exited (status %s) before it answered; see %s"
                                       % (self.proc.returncode, LOG_PATH))
                if time.monotonic() > deadline:
                    raise RuntimeError("the kernel did not answer within %d s" % STARTUP_TIMEOUT_SECS)
        # The first cell: imports the recipe's modules and warms IPython's
        # compile and display path, so the first eval in a child is fast.
        # Not stored in history: a child's first cell is In[1].
        warm = "\n".join("import %s" % name for name in self.imports) or "pass"
        cell = self.execute(warm, STARTUP_TIMEOUT_SECS, store_history=False)
        if cell.error is not None or self.lost:
            raise RuntimeError("the kernel's first cell failed: %s" % (cell.error or self.lost))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def interrupt(self):
        """SIGINT to the kernel's process group: a KeyboardInterrupt in the cell."""
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    def stop(self):
        if self.kc is not None:
            self.kc.stop_channels()
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        # Its sockets and connection file: a killed kernel leaves them behind.
        if self.connection_file is not None:
            try:
                with open(self.connection_file, encoding="utf-8") as f:
                    info = json.load(f)
                names = [self.connection_file] + ["%s-%s" % (info["ip"], info[k]) for k in info if k.endswith("_port")]
            except (OSError, ValueError, KeyError):
                names = [self.connection_file]
            for name in names:
                try:
                    os.unlink(name)
                except OSError:
                    pass
        self.proc = self.kc = self.connection_file = None

    def replace(self):
        """A new kernel for one that died or hung; raises if it cannot start."""
        self.stop()
        self.start()

    def execute(self, code, timeout, silent=False, store_history=True):
        """Runs one cell and collects its messages until the kernel is idle again."""
        cell = Cell()
        msg_id = self.kc.execute(code, silent=silent, store_history=store_history,
                                 allow_stdin=False, stop_on_error=False)
        deadline = time.monotonic() + timeout
        interrupted = None
        while True:
            now = time.monotonic()
            if interrupted is None and now >= deadline:
                self.interrupt()
                interrupted = now
            elif interrupted is not None and now >= interrupted + INTERRUPT_GRACE_SECS:
                self.lost = "it did not stop within %d s of an interrupt" % INTERRUPT_GRACE_SECS
                break
            try:
                msg = self.kc.get_iopub_msg(timeout=POLL_SECS)
            except queue.Empty:
                if not self.alive():
                    self.lost = "the kernel process died"
                    break
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue  # a reply to an earlier request
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                break
            cell.add(msg["msg_type"], msg["content"])
        if not self.lost:
            self.take_reply(msg_id, cell)
        if interrupted is not None:
            cell.error = (cell.error or "") + "(interrupted: the cell ran past its %g-s deadline)\n" % timeout
        if self.lost:
            cell.error = (cell.error or "") + (
                "(%s: a new kernel will be started for the next eval; this one's state is gone)\n" % self.lost
            )
        return cell

    def take_reply(self, msg_id, cell):
        """Reads the execute_reply off the shell channel (so none pile up)."""
        deadline = time.monotonic() + REPLY_TIMEOUT_SECS
        while time.monotonic() < deadline:
            try:
                reply = self.kc.get_shell_msg(timeout=POLL_SECS)
            except queue.Empty:
                continue
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            content = reply["content"]
            if content.get("status") == "error" and cell.error is None:
                cell.error = error_text(content)
            elif content.get("status") == "aborted" and cell.error is None:
                cell.error = "the kernel aborted the cell\n"
            return

    def eval(self, code, reseed):
        if self.lost or not self.alive():
            try:
                self.replace()
            except Exception as e:
                self.lost = "it could not be restarted (%s)" % e
                return {"result": None, "repr": None, "exit_code": 1,
                        "error": "the Jupyter kernel is not available: %s\n" % self.lost}
        try:
            if reseed:
                cell = self.execute(RESEED_CELL, 30, silent=True, store_history=False)
                if self.lost:
                    return cell.head()
            return self.execute(code, eval_timeout()).head()
        except Exception as e:  # the client side broke (ZeroMQ): start over with a new kernel
            self.lost = "its channels failed (%s: %s)" % (type(e).__name__, e)
            return {"result": None, "repr": None, "exit_code": 1,
                    "error": "the Jupyter kernel is not available: %s\n" % self.lost}


def main():
    in_fd, out_fd = open_channel()
    kernel = None
    try:
        kernel = Kernel(config_imports())
        kernel.start()
    except BaseException:
        send_failed(out_fd)
        if kernel is not None:
            kernel.stop()
        return 1
    send(out_fd, b"ready")
    try:
        return serve(in_fd, out_fd, kernel.eval)
    finally:
        kernel.stop()


if __name__ == "__main__":
    sys.exit(main())
