'use strict';
// Warm Node.js runtime for forkd-agent's EVAL: the JavaScript twin of
// python_runtime.py, for Debian bookworm's nodejs (Node 18: no newer APIs).
//
// Started by the agent before the parent VM is snapshotted, so the recipe's
// modules are already required in every fork. It talks to the agent over two
// inherited pipes (FORKD_RUNTIME_FDS="in,out", default "3,4"); each message is
// a u32 little-endian length followed by that many bytes. The first message
// out is "ready" (after the imports) or "failed\n<stack>". Then every request
// is a piece of code and every reply is the JSON head of the EVAL response:
// {result, repr, error, exit_code[, stdout][, stderr]}, as python_runtime.py.
//
// Evaluation works like node's REPL: code runs as a script in this process's
// own global context, so `let`/`const`/`class` and `var`/functions declared
// by one eval are visible to the next, and when the last statement is an
// expression its value is the result (repr: util.inspect; result: the value
// when it is plain JSON data). Code with a top-level `await` runs as an async
// function whose top-level declarations are hoisted out of it, so they persist
// too. Output written through process.stdout/stderr (console.*) during an
// eval is captured and returned, so it can never reach the channel.
//
// The parser is acorn, which Debian's libnode depends on; without it code
// still runs, but top-level await does not and the value of a script that
// ends in a statement is its V8 completion value.

const fs = require('fs');
const net = require('net');
const path = require('path');
const url = require('url');
const util = require('util');
const vm = require('vm');
const Module = require('module');

const MAX_REPR = 1 << 20; // characters of repr returned
const MAX_RESULT = 8 << 20; // characters of JSON result; bigger values return null
const MAX_CAPTURE = 4 << 20; // characters of captured stdout/stderr
const MAX_JSON_DEPTH = 1000; // deeper values return null (python's json recursion limit)
const INSPECT = { depth: 4, maxStringLength: MAX_REPR };

// The agent prefixes the first eval after a hand-over with this: the process
// was seeded in the parent, so every child would draw the same numbers.
const RESEED = Buffer.from('\0reseed\n');

// Captured before any eval can replace them.
const { stringify, parse } = JSON;
const { getPrototypeOf, keys } = Object;
const isArray = Array.isArray;
const realExit = process.exit.bind(process);

let acorn = null;
try {
  acorn = require('acorn');
} catch {
  process.stderr.write('forkd node runtime: acorn not found, top-level await is off\n');
}

// ---- the channel ----

function send(fd, data) {
  const msg = Buffer.alloc(4 + data.length);
  msg.writeUInt32LE(data.length, 0);
  data.copy(msg, 4);
  // The reply pipe is blocking (only the request pipe is read through libuv).
  for (let off = 0; off < msg.length;) off += fs.writeSync(fd, msg, off, msg.length - off);
}

/** Length-prefixed messages from a pipe; next() resolves null at EOF. */
class Reader {
  constructor(fd) {
    this.chunks = [];
    this.bytes = 0;
    this.ended = false;
    this.wake = null;
    this.socket = new net.Socket({ fd, readable: true, writable: false });
    this.socket.on('data', (chunk) => {
      this.chunks.push(chunk);
      this.bytes += chunk.length;
      this.notify();
    });
    const end = () => {
      this.ended = true;
      this.notify();
    };
    this.socket.on('end', end);
    this.socket.on('close', end);
    this.socket.on('error', end);
  }

  notify() {
    const wake = this.wake;
    this.wake = null;
    if (wake) wake();
  }

  take(n) {
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.bytes);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.bytes -= n;
    return all.subarray(0, n);
  }

  async next() {
    for (;;) {
      if (this.bytes >= 4) {
        const head = this.chunks[0].length >= 4 ? this.chunks[0] : Buffer.concat(this.chunks);
        const n = head.readUInt32LE(0);
        if (this.bytes >= 4 + n) {
          this.take(4);
          return this.take(n);
        }
      }
      if (this.ended) return null;
      await new Promise((resolve) => (this.wake = resolve));
    }
  }
}

// ---- randomness ----

/**
 * Math.random drawn from /dev/urandom through a pool. V8's own generator
 * (and the isolate seed a new context would draw from) lives in the VM's
 * memory, so every child of a snapshot would repeat the parent's sequence;
 * the kernel's pool is reseeded per child by the agent before it asks us to
 * reseed, and reseeding here only has to drop what the parent had drawn.
 * Not covered: the crypto module's generator (OpenSSL's DRBG) is cloned too,
 * and node gives JavaScript no call that reseeds it: crypto.randomBytes,
 * getRandomValues and randomUUID repeat across the children of a snapshot.
 */
function installRandom() {
  const POOL = 4096;
  const pool = Buffer.alloc(POOL);
  let pos = POOL;
  let fd = -1;
  function refill() {
    if (fd < 0) fd = fs.openSync('/dev/urandom', 'r');
    for (let n = 0; n < POOL;) n += fs.readSync(fd, pool, n, POOL - n, null);
    pos = 0;
  }
  function random() {
    if (pos > POOL - 8) refill();
    const hi = pool.readUInt32LE(pos) >>> 11; // 21 + 32 = 53 bits, a double's mantissa
    const lo = pool.readUInt32LE(pos + 4);
    pos += 8;
    return (hi * 0x100000000 + lo) / 0x20000000000000;
  }
  Object.defineProperty(Math, 'random', { value: random, writable: true, configurable: true });
  return {
    reseed() {
      pos = POOL;
    },
  };
}

// ---- a time-travel fork's variant ----

/** Written by the host at hand-over when the child was forked with variants. */
const VARY_FILE = '/run/forkd/vary.json';
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
/** Names an earlier variant bound (a fork of a fork): a newer variant may rebind them. */
const variantNames = new Set();

/**
 * `vary` (the object) and each of its identifier names as globals of the eval
 * context, except names the context already has (`require`, `Math`…) and
 * an earlier variant did not bind: a variant never replaces what the runtime
 * or the warm-up defined.
 */
function applyVariant() {
  let variant;
  try {
    variant = JSON.parse(fs.readFileSync(VARY_FILE, 'utf8'));
  } catch {
    return;
  }
  if (variant === null || typeof variant !== 'object' || Array.isArray(variant)) return;
  globalThis.vary = variant;
  for (const [name, value] of Object.entries(variant)) {
    if (IDENTIFIER.test(name) && (variantNames.has(name) || !(name in globalThis))) {
      globalThis[name] = value;
      variantNames.add(name);
    }
  }
}

// ---- captured output ----

class Capture {
  constructor() {
    this.text = '';
    this.dropped = 0;
  }

  write(s) {
    const room = MAX_CAPTURE - this.text.length;
    if (s.length <= room) this.text += s;
    else {
      this.text += s.slice(0, room);
      this.dropped += s.length - room;
    }
  }

  value() {
    return this.dropped ? `${this.text}\n... [truncated ${this.dropped} characters]` : this.text;
  }
}

/** Routes stream.write (which console.* calls) into `sink`; returns the undo. */
function captureStream(stream, sink) {
  const own = Object.prototype.hasOwnProperty.call(stream, 'write');
  const saved = stream.write;
  stream.write = function write(chunk, encoding, cb) {
    if (typeof encoding === 'function') [cb, encoding] = [encoding, undefined];
    if (typeof chunk === 'string') {
      sink.write(encoding && encoding !== 'utf8' ? Buffer.from(chunk, encoding).toString() : chunk);
    } else {
      sink.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString());
    }
    if (typeof cb === 'function') process.nextTick(cb);
    return true;
  };
  return () => {
    if (own) stream.write = saved;
    else delete stream.write;
  };
}

// ---- values ----

function truncate(text, limit) {
  if (text.length <= limit) return text;
  return `${text.slice(0, limit)}\n... [truncated ${text.length - limit} characters]`;
}

/** Plain JSON data only (python's json.dumps is as strict): no undefined, NaN, Date, Map, class instances. */
function isJsonData(v, depth, path) {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (typeof v !== 'object' || depth > MAX_JSON_DEPTH || path.has(v)) return false;
  let items;
  if (isArray(v)) items = v;
  else {
    const proto = getPrototypeOf(v);
    if (proto !== null && getPrototypeOf(proto) !== null) return false;
    if (typeof v.toJSON === 'function') return false;
    items = keys(v).map((k) => v[k]);
  }
  path.add(v);
  for (let i = 0; i < items.length; i++) if (!isJsonData(items[i], depth + 1, path)) return false;
  path.delete(v);
  return true;
}

/** The value itself if it is plain JSON data (and not huge), else null. */
function jsonValue(value) {
  try {
    if (!isJsonData(value, 0, new Set())) return null;
    const text = stringify(value);
    return text === undefined || text.length > MAX_RESULT ? null : parse(text);
  } catch {
    return null;
  }
}

function isError(v) {
  return util.types.isNativeError(v) || v instanceof Error;
}

/**
 * The error as node prints it, without the frames of this runtime (a syntax
 * error has none of its own, as python's), and without the source line node
 * puts above an error thrown outside eval'd code (this runtime's, node's).
 */
function formatError(err, { syntax = false } = {}) {
  if (!isError(err)) return `Uncaught ${util.inspect(err, INSPECT)}`;
  let text;
  try {
    text = typeof err.stack === 'string' && err.stack ? err.stack : `${err.name}: ${err.message}`;
  } catch {
    text = String(err);
  }
  let lines = text.split('\n');
  // "file:line", the source line, the caret, a blank line: see vm's displayErrors.
  if (/^\S.*:\d+$/.test(lines[0]) && !lines[0].startsWith('<eval-') && lines[3] === '')
    lines = lines.slice(4);
  const frame = (line) => /^\s+at /.test(line);
  const own = (line) => line.includes(__filename) || /\bnode:(vm|internal\/vm)\b/.test(line);
  // Frames below the last one in eval'd code (or, without one, from this
  // runtime's first on) are the runtime and the event loop calling it.
  let cut = lines.findIndex((line) => frame(line) && own(line));
  lines.forEach((line, i) => {
    if (frame(line) && line.includes('<eval-')) cut = i + 1;
  });
  const keep = (line, i) => !syntax && (cut < 0 || i < cut) && !own(line);
  return lines.filter((line, i) => !frame(line) || keep(line, i)).join('\n');
}

// ---- compiling ----

/** import() inside eval'd code: scripts run by vm have no module loader of their own. */
const IMPORT_HELPER = '__forkdImport';
function dynamicImport(specifier) {
  const spec = String(specifier);
  const relative = spec.startsWith('./') || spec.startsWith('../') || spec.startsWith('/');
  return import(relative ? url.pathToFileURL(path.resolve(process.cwd(), spec)).href : spec);
}

// Bodies that are their own scope for `var` (and where top-level await cannot be).
const OWN_SCOPE = new Set([
  'FunctionDeclaration',
  'FunctionExpression',
  'ArrowFunctionExpression',
  'StaticBlock',
  'PropertyDefinition',
]);

function parseScript(code) {
  if (!acorn) return null;
  try {
    return acorn.parse(code, {
      ecmaVersion: 'latest',
      sourceType: 'script',
      allowAwaitOutsideFunction: true,
      allowHashBang: true,
    });
  } catch (err) {
    return { error: err };
  }
}

/** Every child node of `node`, in source order. */
function children(node) {
  const out = [];
  for (const key of keys(node)) {
    const v = node[key];
    for (const c of isArray(v) ? v : [v]) if (c && typeof c.type === 'string') out.push(c);
  }
  return out;
}

/** The names a declaration pattern binds. */
function boundNames(pattern, out) {
  if (!pattern) return out;
  switch (pattern.type) {
    case 'Identifier':
      out.push(pattern.name);
      break;
    case 'ObjectPattern':
      for (const p of pattern.properties) boundNames(p.type === 'RestElement' ? p.argument : p.value, out);
      break;
    case 'ArrayPattern':
      for (const e of pattern.elements) boundNames(e, out);
      break;
    case 'RestElement':
      boundNames(pattern.argument, out);
      break;
    case 'AssignmentPattern':
      boundNames(pattern.left, out);
      break;
  }
  return out;
}

/** Text edits on the source, by UTF-16 offset (acorn's positions): insertions and deletions. */
class Edits {
  constructor(code) {
    this.code = code;
    this.before = new Map();
    this.deleted = [];
  }

  insert(pos, text) {
    this.before.set(pos, (this.before.get(pos) ?? '') + text);
  }

  replace(start, end, text) {
    this.insert(start, text);
    this.deleted.push([start, end]);
  }

  apply() {
    const cuts = new Set([0, this.code.length, ...this.before.keys()]);
    for (const [s, e] of this.deleted) cuts.add(s).add(e);
    const points = [...cuts].sort((a, b) => a - b);
    let out = '';
    for (let i = 0; i < points.length; i++) {
      const at = points[i];
      out += this.before.get(at) ?? '';
      const next = points[i + 1];
      if (next === undefined) break;
      if (!this.deleted.some(([s, e]) => at >= s && next <= e)) out += this.code.slice(at, next);
    }
    return out;
  }
}

/** Calls visit(node, inFunction, parent) on every node of the script, in source order. */
function walk(ast, visit) {
  const go = (node, inFunction, parent) => {
    visit(node, inFunction, parent);
    const inner = inFunction || OWN_SCOPE.has(node.type);
    for (const child of children(node)) go(child, inner, node);
  };
  for (const stmt of ast.body) go(stmt, false, ast);
}

/** Whether the script awaits at top level; and every import() goes through the helper. */
function rewriteImports(ast, edits) {
  let awaits = false;
  walk(ast, (node, inFunction) => {
    if (node.type === 'ImportExpression')
      edits.replace(node.start, node.start + 'import'.length, IMPORT_HELPER);
    if (!inFunction && (node.type === 'AwaitExpression' || (node.type === 'ForOfStatement' && node.await)))
      awaits = true;
  });
  return awaits;
}

/**
 * For a script run as an async function: its top-level declarations (and
 * every `var` outside functions) become assignments to names hoisted out of
 * the function, as in node's REPL, so they outlive it. Returns the names.
 */
function hoistDeclarations(ast, edits) {
  const hoisted = { var: [], let: [] };
  walk(ast, (node, inFunction, parent) => {
    if (inFunction) return;
    if (node.type === 'VariableDeclaration' && (node.kind === 'var' || parent === ast)) {
      rewriteDeclaration(node, parent, edits, hoisted);
    } else if (parent === ast && (node.type === 'ClassDeclaration' || node.type === 'FunctionDeclaration')) {
      edits.insert(node.start, `${node.id.name}=`);
      edits.insert(node.end, ';');
      hoisted[node.type === 'ClassDeclaration' ? 'let' : 'var'].push(node.id.name);
    }
  });
  return hoisted;
}

/** `let a = 1, {b} = o;` -> `void ((a = 1), ({b} = o));` with a and b hoisted (for heads keep their pattern). */
function rewriteDeclaration(node, parent, edits, hoisted) {
  const names = [];
  for (const d of node.declarations) boundNames(d.id, names);
  hoisted[node.kind === 'var' ? 'var' : 'let'].push(...names);
  const keyword = [node.start, node.start + node.kind.length];
  if ((parent.type === 'ForInStatement' || parent.type === 'ForOfStatement') && parent.left === node) {
    edits.replace(keyword[0], keyword[1], '');
    return;
  }
  edits.replace(keyword[0], keyword[1], 'void (');
  for (const d of node.declarations) {
    edits.insert(d.start, '(');
    edits.insert(d.end, d.init ? ')' : node.kind === 'var' ? ')' : '=undefined)');
  }
  edits.insert(node.declarations[node.declarations.length - 1].end, ')');
}

/**
 * The script to run for `code` and how to read its completion: `hasValue`
 * true/false (the last statement is/is not an expression), or 'completion'
 * when the code could not be parsed here (V8's completion value decides).
 */
function compile(code, filename) {
  const options = { filename };
  // `{ a: 1 }` is an object, as in node's REPL, not a block with a label.
  if (/^\s*\{/.test(code) && /\}\s*$/.test(code)) {
    const ast = parseScript(`(${code})`);
    if (ast && !ast.error) code = `(${code})`;
  }
  const ast = parseScript(code);
  if (!ast || ast.error) {
    try {
      return { script: new vm.Script(code, options), async: false, hasValue: 'completion' };
    } catch (err) {
      // V8 reads a top-level await in a script as an error about await; acorn knows what is wrong.
      if (ast && /await is only valid/.test(err.message)) throw acornSyntaxError(ast.error, code, filename);
      throw err;
    }
  }
  const last = ast.body[ast.body.length - 1];
  const hasValue = last !== undefined && last.type === 'ExpressionStatement';
  const edits = new Edits(code);
  if (!rewriteImports(ast, edits)) {
    // A plain script: its declarations are the global ones they say they are.
    return { script: new vm.Script(edits.apply(), options), async: false, hasValue };
  }
  const hoisted = hoistDeclarations(ast, edits);
  if (hasValue) {
    // An array, so a promise-valued expression is not adopted by the async function's return.
    edits.insert(last.start, 'return [(');
    edits.insert(last.expression.end, ')]');
  }
  const prelude =
    (hoisted.var.length ? `var ${[...new Set(hoisted.var)].join(', ')}; ` : '') +
    (hoisted.let.length ? `let ${[...new Set(hoisted.let)].join(', ')}; ` : '');
  // All on the first line, so line numbers in stacks are the code's own.
  const wrapped = `${prelude}(async () => { ${edits.apply()}\n})()`;
  return { script: new vm.Script(wrapped, options), async: true, hasValue };
}

/**
 * For the browser runtime: the code is the body of an async function of
 * (page, context, browser), so `return` gives the result and nothing the
 * code declares outlives the call.
 */
function compileBody(code, filename) {
  const wrapped = `(async (page, context, browser) => { ${code}\n})`;
  const ast = parseScript(wrapped);
  let source = wrapped;
  if (ast && !ast.error) {
    const edits = new Edits(wrapped);
    rewriteImports(ast, edits);
    source = edits.apply();
  }
  try {
    return new vm.Script(source, { filename });
  } catch (err) {
    if (ast && ast.error && err instanceof SyntaxError) throw acornSyntaxError(ast.error, wrapped, filename);
    throw err;
  }
}

function acornSyntaxError(parseError, code, filename) {
  const { line, column } = parseError.loc;
  const source = code.split('\n')[line - 1] ?? '';
  const err = new SyntaxError(parseError.message.replace(/ \(\d+:\d+\)$/, ''));
  err.stack = `${filename}:${line}\n${source}\n${' '.repeat(column)}^\n\n${err.name}: ${err.message}`;
  return err;
}

// ---- evaluating ----

class ProcessExit extends Error {
  constructor(code) {
    super(`process.exit(${code}) was called: the runtime stays up`);
    this.name = 'ProcessExit';
  }
}

/** Wraps what compiling threw, to tell it apart from what the code threw. */
class CompileError {
  constructor(error) {
    this.error = error;
  }
}

class Evaluator {
  /** `bodyArgs`, for the browser runtime: each eval is a function body called with these. */
  constructor(bodyArgs = null) {
    this.count = 0;
    this.last = undefined;
    this.bodyArgs = bodyArgs;
  }

  /** `_` is the last result, unless the code made `_` its own. */
  remember(value) {
    if (!('_' in globalThis) || Object.is(globalThis._, this.last)) {
      globalThis._ = value;
      this.last = value;
    }
  }

  async run(code) {
    this.count += 1;
    const filename = `<eval-${this.count}>`;
    const head = { result: null, repr: null, error: null, exit_code: 0 };
    const out = new Capture();
    const err = new Capture();
    const undo = [captureStream(process.stdout, out), captureStream(process.stderr, err)];
    try {
      let compiled;
      try {
        compiled = this.bodyArgs
          ? { script: compileBody(code, filename), async: true, hasValue: 'returned' }
          : compile(code, filename);
      } catch (e) {
        throw new CompileError(e);
      }
      const { script, async, hasValue } = compiled;
      let value = script.runInThisContext();
      if (this.bodyArgs) value = await value(...this.bodyArgs());
      else if (async) value = await value;
      // 'completion' and 'returned': there is a value unless it is undefined.
      if (hasValue === true || (hasValue !== false && value !== undefined)) {
        if (async && !this.bodyArgs) value = value[0];
        this.remember(value);
        head.repr = truncate(util.inspect(value, INSPECT), MAX_REPR);
        head.result = jsonValue(value);
      }
    } catch (e) {
      head.result = null;
      head.repr = null;
      head.error = e instanceof CompileError ? formatError(e.error, { syntax: true }) : formatError(e);
      head.exit_code = 1;
    }
    // One turn of the event loop: what the code queued to print right away
    // (a resolved promise's callback, a nextTick) belongs to this eval.
    await new Promise((resolve) => setImmediate(resolve));
    for (const u of undo) u();
    if (out.text) head.stdout = out.value();
    if (err.text) head.stderr = err.value();
    return head;
  }

  /**
   * Takes every path of run() once, leaving no trace, so that the parent is
   * frozen with this code compiled: under TCG a child's first eval otherwise
   * spends a second compiling the parser and util.inspect.
   */
  async warmUp() {
    for (const code of this.bodyArgs ? WARM_UP_BODY : WARM_UP) await this.run(code);
    this.count = 0;
    this.last = undefined;
    delete globalThis._;
  }
}

// No declarations: they would outlive the warm-up.
const WARM_UP = [
  "({ a: [1, 2.5, null, true], b: 'x', c: new Map([[1, { d: [] }]]) })",
  "for (let i = 0; i < 2; i++) console.log(i, import('fs') && 'x'); undefined",
  "await Promise.resolve(); [1, 'a', { b: null }].map((x) => typeof x)",
  'null.x',
  'await Promise.reject(new Error())',
  '(',
];

// The browser runtime's twin of WARM_UP: each a function body of (page, context, browser).
const WARM_UP_BODY = [
  'return await page.title()',
  'return { a: [1, null], n: await page.evaluate(() => document.title.length), c: context.pages().length, b: typeof browser.version() }',
  "console.log('x'); return page",
  "await Promise.reject(new Error('x'))",
  'return (',
];

// ---- start-up ----

/** A global name for a module: "fs", "node:fs" -> fs; "fs/promises" -> fs_promises; "x as y" -> y. */
function globalName(spec) {
  const [name, alias] = spec.split(/\s+as\s+/).map((s) => s.trim());
  if (alias) return [name, alias];
  const id = name.replace(/^node:/, '').replace(/[^A-Za-z0-9_$]/g, '_');
  return [name, /^[0-9]/.test(id) ? `_${id}` : id];
}

function readConfig(configPath) {
  return configPath && fs.existsSync(configPath) ? parse(fs.readFileSync(configPath, 'utf8')) : {};
}

function loadImports(config, userRequire) {
  for (const spec of config.imports || []) {
    const [name, as] = globalName(spec);
    globalThis[as] = userRequire(name);
  }
}

async function main() {
  // Node marks inherited fds close-on-exec when it starts, so processes the
  // eval'd code starts never hold the channel open (python_runtime.py has to).
  const [input, output] = (process.env.FORKD_RUNTIME_FDS || '3,4').split(',').map(Number);
  const configPath = process.env.FORKD_RUNTIME_CONFIG || process.argv[2];

  const random = installRandom();
  // require() in eval'd code resolves from the working directory, then from
  // this file's node_modules (a recipe's npm packages), then node's global
  // paths; import() of a package finds that node_modules from here.
  const own = path.join(__dirname, 'node_modules');
  process.env.NODE_PATH = [own, process.env.NODE_PATH].filter(Boolean).join(path.delimiter);
  Module._initPaths();
  const userRequire = Module.createRequire(path.join(process.cwd(), '[eval]'));
  globalThis.require = userRequire;
  globalThis[IMPORT_HELPER] = dynamicImport;
  process.exit = (code) => {
    throw new ProcessExit(code ?? process.exitCode ?? 0);
  };
  // Errors nobody waits for (a throwing timer, a rejected promise left alone)
  // must not end the runtime: node's default for both is to exit.
  const report = (what, e) =>
    process.stderr.write(`${what} ${isError(e) ? formatError(e) : util.inspect(e)}\n`);
  process.on('uncaughtException', (e) => report('Uncaught', e));
  process.on('unhandledRejection', (e) => report('Unhandled rejection:', e));

  let browser = null;
  try {
    const config = readConfig(configPath);
    loadImports(config, userRequire);
    if (config.kind === 'browser') browser = await require('./browser.js').startBrowser(userRequire);
  } catch (e) {
    send(output, Buffer.from(`failed\n${e && e.stack ? e.stack : String(e)}`));
    return realExit(1);
  }
  const evaluator = new Evaluator(browser && (() => browser.args()));
  await evaluator.warmUp();
  send(output, Buffer.from('ready'));

  const reader = new Reader(input);
  for (;;) {
    let code = await reader.next();
    if (code === null) return realExit(0);
    if (code.subarray(0, RESEED.length).equals(RESEED)) {
      code = code.subarray(RESEED.length);
      random.reseed();
      applyVariant();
      if (browser) await browser.reseed();
    }
    const head = await evaluator.run(code.toString('utf8'));
    send(output, Buffer.from(stringify(head)));
  }
}

main().catch((e) => {
  process.stderr.write(`forkd node runtime: ${e && e.stack ? e.stack : String(e)}\n`);
  realExit(1);
});
