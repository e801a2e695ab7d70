// Test hosts for the hostile-guest suite: a network namespace this test makes
// itself, joined to the host by a veth pair, holding the addresses a guest
// must (or must not) reach: a "public" host (TEST-NET-3), a private-range
// host and the cloud metadata address. Each runs a TCP listener that answers
// with its own address. No traffic leaves this machine: every address a test
// dials is either the host's own or inside this namespace.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export const PUBLIC_HOST = '203.0.113.7';
export const PRIVATE_HOST = '10.213.7.2';
/** The host's end of the veth: an address of the host on a non-loopback interface. */
export const HOST_VETH_ADDR = '10.213.7.1';
export const METADATA_HOST = '169.254.169.254';
export const TEST_PORT = 18080;

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

export interface TestHosts {
  close(): void;
}

/** Port ${TEST_PORT} answers at once; port 80 answers an HTTP request with the Host it was sent. */
const SERVER = `
const net = require('node:net');
for (const addr of process.argv.slice(1)) {
  net.createServer((s) => s.end('hello from ' + addr + '\\n')).listen(${TEST_PORT}, addr);
  net.createServer((s) => {
    let head = '';
    s.on('data', (d) => {
      head += d;
      if (!head.includes('\\r\\n\\r\\n')) return;
      const host = (/^host:\\s*(\\S+)/im.exec(head) || [])[1];
      s.end('HTTP/1.0 200 OK\\r\\n\\r\\nhello from ' + addr + ' host=' + host + '\\n');
    });
  }).listen(80, addr);
}
process.stdout.write('ready\\n');
`;

export async function createTestHosts(): Promise<TestHosts> {
  const suffix = randomBytes(3).toString('hex');
  const ns = `forkdt-${suffix}`;
  const hostEnd = `fkh${suffix}`;
  const nsEnd = `fkn${suffix}`;
  ip('netns', 'add', ns);
  let server: ChildProcess | undefined;
  const close = () => {
    server?.kill('SIGKILL');
    spawnSync('ip', ['link', 'del', hostEnd]);
    spawnSync('ip', ['netns', 'del', ns]);
  };
  try {
    ip('link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', nsEnd);
    ip('link', 'set', nsEnd, 'netns', ns);
    ip('addr', 'add', `${HOST_VETH_ADDR}/24`, 'dev', hostEnd);
    ip('link', 'set', hostEnd, 'up');
    ip('route', 'add', `${PUBLIC_HOST}/32`, 'dev', hostEnd);
    ip('route', 'add', `${METADATA_HOST}/32`, 'dev', hostEnd);
    const inNs = (...args: string[]) => ip('-n', ns, ...args);
    inNs('link', 'set', 'lo', 'up');
    inNs('link', 'set', nsEnd, 'up');
    for (const addr of [`${PRIVATE_HOST}/24`, `${PUBLIC_HOST}/32`, `${METADATA_HOST}/32`]) {
      inNs('addr', 'add', addr, 'dev', nsEnd);
    }
    inNs('route', 'add', 'default', 'dev', nsEnd);
    server = spawn(
      'ip',
      ['netns', 'exec', ns, process.execPath, '-e', SERVER, PRIVATE_HOST, PUBLIC_HOST, METADATA_HOST],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve, reject) => {
      server!.stdout!.once('data', () => resolve());
      server!.once('exit', (code) => reject(new Error(`test host server exited (${code})`)));
    });
    return { close };
  } catch (err) {
    close();
    throw err;
  }
}
