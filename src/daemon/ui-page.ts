// The daemon's read-only web page (/ui): the snapshot tree with the
// sandboxes running from each, redrawn every 2 s from GET /v1/tree. The page
// itself holds no data and is served without a token; its calls carry the
// token the user puts in the URL's fragment (`/ui#token=…`), which browsers
// never send to a server, so it stays out of access logs. Everything is
// drawn with textContent (no HTML from data), and the Content-Security-Policy
// allows this one script and calls to this daemon only.
import { createHash } from 'node:crypto';

const SCRIPT = `
const token = new URLSearchParams(location.hash.slice(1)).get('token');
const headers = token ? { authorization: 'Bearer ' + token } : {};
const status = document.getElementById('status');
const tree = document.getElementById('tree');

function size(b) {
  if (b >= 2 ** 30) return (b / 2 ** 30).toFixed(1) + ' GiB';
  if (b >= 2 ** 20) return (b / 2 ** 20).toFixed(1) + ' MiB';
  return Math.round(b / 1024) + ' KiB';
}

function item(cls, text, note) {
  const li = document.createElement('li');
  li.className = cls;
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = text;
  li.append(name);
  if (note) {
    const n = document.createElement('span');
    n.className = 'note';
    n.textContent = note;
    li.append(n);
  }
  return li;
}

function render(nodes) {
  const lists = new Map();
  const root = document.createElement('ul');
  for (const n of nodes) {
    const notes = [size(n.bytes)];
    if (n.status !== 'ready') notes.push(n.status);
    if (n.branched_from_sandbox) notes.push('branched from ' + n.branched_from_sandbox);
    if (n.parent_missing) notes.push('parent ' + n.parent_missing + ' removed');
    const li = item('snapshot', n.tag, notes.join(', '));
    li.dataset.tag = n.tag;
    const children = document.createElement('ul');
    for (const id of n.sandboxes) {
      const s = item('sandbox', id, 'running');
      s.dataset.sandbox = id;
      children.append(s);
    }
    li.append(children);
    lists.set(n.tag, children);
    (n.parent !== null && lists.get(n.parent) || root).append(li);
  }
  tree.replaceChildren(nodes.length ? root : document.createTextNode('no snapshots'));
}

async function refresh() {
  try {
    const res = await fetch('/v1/tree', { headers, cache: 'no-store' });
    const body = await res.json();
    if (!res.ok) throw new Error(res.status + ': ' + body.error);
    render(body.snapshots);
    const running = body.snapshots.reduce((a, n) => a + n.sandboxes.length, 0);
    status.className = '';
    status.textContent = body.snapshots.length + ' snapshots, ' + running + ' sandboxes running · ' + new Date().toLocaleTimeString();
  } catch (e) {
    status.className = 'error';
    status.textContent = String(e && e.message ? e.message : e) + (token ? '' : ' (open /ui#token=<your token>)');
  }
}

refresh();
setInterval(refresh, 2000);
`;

const STYLE = `
body { font: 14px/1.5 system-ui, sans-serif; margin: 2em; color: #1d2330; background: #fbfbfd; }
h1 { font-size: 20px; margin: 0 0 .2em; }
#status { color: #5b6475; margin-bottom: 1.2em; }
#status.error { color: #b3261e; }
ul { list-style: none; margin: 0; padding-left: 1.4em; border-left: 1px solid #c9cedb; }
#tree > ul { border-left: none; padding-left: 0; }
li { margin: .25em 0; position: relative; }
li.snapshot > .name { font-weight: 600; }
li.snapshot > .name::before { content: ''; display: inline-block; width: 7px; height: 7px; margin: 0 .55em 1px .1em; background: #3b5bdb; transform: rotate(45deg); }
li.sandbox > .name { font-family: ui-monospace, monospace; }
li.sandbox > .name::before { content: '● '; color: #2f9e44; }
.note { color: #5b6475; margin-left: .6em; font-size: 13px; }
`;

export const UI_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>forkd</title>
<style>${STYLE}</style>
</head>
<body>
<h1>forkd: snapshots and sandboxes</h1>
<div id="status">loading…</div>
<div id="tree"></div>
<script>${SCRIPT}</script>
</body>
</html>
`;

const hash = (text: string): string => createHash('sha256').update(text).digest('base64');

/** This page's script and style, and calls to this origin: nothing else may run or load. */
export const UI_CSP = [
  "default-src 'none'",
  `script-src 'sha256-${hash(SCRIPT)}'`,
  `style-src 'sha256-${hash(STYLE)}'`,
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');
