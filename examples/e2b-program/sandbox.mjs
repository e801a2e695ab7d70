// A program written for E2B's base SDK, nothing forkd-specific in it: a
// sandbox from the template named by E2B_TEMPLATE (E2B's `base` if unset),
// a command, a file written and read back, a web server started in the
// sandbox and fetched at its public host name, and kill. Prints one JSON
// line. Against forkd:
//   eval "$(forkd e2b env)" && node examples/e2b-program/sandbox.mjs
import { Sandbox } from 'e2b';

const sandbox = await Sandbox.create(process.env.E2B_TEMPLATE ?? 'base', { requestTimeoutMs: 300_000 });
const seen = { sandboxId: sandbox.sandboxId };
try {
  seen.echo = (await sandbox.commands.run('echo "hello from $(uname -s)"')).stdout;
  await sandbox.files.write('www/index.html', 'served from the sandbox');
  seen.file = await sandbox.files.read('www/index.html');
  await sandbox.commands.run(
    'busybox httpd -p 127.0.0.1:8000 -h /home/user/www || python3 -m http.server -d /home/user/www 8000 &',
  );
  const host = sandbox.getHost(8000);
  seen.host = host;
  const res = await fetch(`https://${host}/index.html`);
  seen.page = await res.text();
} finally {
  await sandbox.kill();
}
console.log(JSON.stringify(seen));
