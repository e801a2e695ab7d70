// A local certificate authority for E2B's domain mode. E2B's SDK, given only
// E2B_DOMAIN, insists on https://api.<domain> and https://<port>-<id>.<domain>;
// forkd then serves TLS with a certificate for `<domain>` and `*.<domain>`
// signed by a CA it made itself, which clients trust through
// NODE_EXTRA_CA_CERTS (Node) or SSL_CERT_FILE (Python). The CA is made once
// per data dir and kept; the server certificate is remade when the domain
// changes. Keys are written 0600. openssl does the X.509 work.
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError } from '../../errors.js';
import { run } from '../../util/run.js';

export interface LocalTls {
  dir: string;
  domain: string;
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** DNS labels only: the domain goes into a certificate and into host-name routing. */
const DOMAIN =
  /^(?=.{1,200}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/;

export function checkE2bDomain(domain: string): string {
  if (!DOMAIN.test(domain)) {
    throw new InvalidArgumentError(
      `E2B domain ${JSON.stringify(domain)} is not a DNS name of two or more labels`,
      'e2b-domain',
      {
        hint: 'use e.g. e2b.localhost (a wildcard certificate needs a name below the top label)',
      },
    );
  }
  return domain;
}

export function localTlsPaths(dataDir: string): Omit<LocalTls, 'domain'> {
  const dir = join(dataDir, 'e2b-tls');
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    certFile: join(dir, 'server.pem'),
    keyFile: join(dir, 'server-key.pem'),
  };
}

/** openssl req's arguments for a new unencrypted P-256 key. */
const NEW_P256_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

const exists = (path: string) =>
  readFile(path).then(
    () => true,
    () => false,
  );

/** The CA and a server certificate for `domain`, made if missing. */
export async function ensureLocalTls(dataDir: string, domain: string): Promise<LocalTls> {
  checkE2bDomain(domain);
  const paths = localTlsPaths(dataDir);
  const { dir, caFile, certFile, keyFile } = paths;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const caKey = join(dir, 'ca-key.pem');
  if (!(await exists(caFile)) || !(await exists(caKey))) {
    await run([
      'openssl',
      'req',
      '-x509',
      ...NEW_P256_KEY,
      '-keyout',
      caKey,
      '-out',
      caFile,
      '-days',
      '3650',
      '-subj',
      '/CN=forkd local E2B CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    await chmod(caKey, 0o600);
  }
  const domainFile = join(dir, 'domain');
  const current = await readFile(domainFile, 'utf8').catch(() => null);
  if (current !== domain || !(await exists(certFile)) || !(await exists(keyFile))) {
    const csr = join(dir, 'server.csr');
    const ext = join(dir, 'server.ext');
    await writeFile(
      ext,
      `subjectAltName=DNS:${domain},DNS:*.${domain}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`,
    );
    try {
      await run([
        'openssl',
        'req',
        ...NEW_P256_KEY,
        '-keyout',
        keyFile,
        '-out',
        csr,
        '-subj',
        `/CN=${domain}`,
      ]);
      await chmod(keyFile, 0o600);
      await run([
        'openssl',
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        caFile,
        '-CAkey',
        caKey,
        '-CAcreateserial',
        '-out',
        certFile,
        '-days',
        '825',
        '-extfile',
        ext,
      ]);
      await writeFile(domainFile, domain);
    } finally {
      await rm(csr, { force: true });
      await rm(ext, { force: true });
    }
  }
  return { ...paths, domain };
}

/** The domain a data dir's certificate was made for, if any. */
export async function localTlsDomain(dataDir: string): Promise<string | null> {
  const text = await readFile(join(localTlsPaths(dataDir).dir, 'domain'), 'utf8').catch(() => null);
  return text?.trim() || null;
}
