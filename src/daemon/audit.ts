// The audit log: one JSON line per request, unauthorised ones included.
import { createWriteStream, type WriteStream } from 'node:fs';

export interface AuditEntry {
  ts: string;
  method: string;
  path: string;
  status: number;
  latency_us: number;
  ua: string | null;
  remote: string;
}

export class AuditLog {
  private readonly stream: WriteStream;

  constructor(path: string) {
    this.stream = createWriteStream(path, { flags: 'a' });
  }

  write(entry: AuditEntry): void {
    this.stream.write(JSON.stringify(entry) + '\n');
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.stream.end(resolve));
  }
}
