// A TCP port inside a sandbox, reached from the host as a stream: the agent
// runs `forkd-agent --relay PORT` (guest/agent/relay.c), which connects to the
// guest's own loopback, and the exec's stdin and stdout carry the bytes. The
// guest gets no network for it and the host opens no port. Both directions
// are bounded: the guest may run OUTPUT_WINDOW bytes ahead of what this
// stream's reader took, and bytes for the guest wait until the agent channel
// has room.
import { Duplex } from 'node:stream';
import { ConflictError, InvalidArgumentError, PortClosedError } from '../errors.js';
import type { AgentClient } from './agent/client.js';
import type { ExecHandle } from './agent/types.js';

/** The agent's name for its own binary in an EXEC (guest/agent/agent.h AGENT_SELF). */
const AGENT_SELF = '@forkd-agent';
/** relay.c's exit status when nothing listens on the port. */
const RELAY_REFUSED = 2;

export function checkGuestPort(port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`port must be an integer from 1 to 65535, got ${port}`, 'port');
  }
  return port;
}

class GuestPortStream extends Duplex {
  private readonly handle: ExecHandle;
  /** Output pushed while the reader was full: acknowledged when it reads again. */
  private held = 0;
  private received = 0;
  /** The start of the relay's stderr: its reason when it could not connect. */
  private stderr = '';

  constructor(
    private readonly agent: AgentClient,
    private readonly port: number,
    private readonly label: string,
  ) {
    super({ allowHalfOpen: true });
    this.handle = agent.startExec(
      { args: [AGENT_SELF, '--relay', String(port)], stdinOpen: true, collectOutput: false },
      {
        manualAck: true,
        onStdout: (chunk) => {
          this.received += chunk.length;
          if (this.push(chunk)) this.handle.ack(chunk.length);
          else this.held += chunk.length;
        },
        onStderr: (chunk) => {
          if (this.stderr.length < 1024) this.stderr += chunk.toString('utf8').slice(0, 1024);
          this.handle.ack(chunk.length);
        },
      },
    );
    this.handle.wait().then(
      (result) => {
        if (result.exitCode === 0 || this.received > 0) this.push(null);
        else this.destroy(this.relayError(result.exitCode, this.stderr.trim()));
      },
      (err: Error) => this.destroy(err),
    );
  }

  private relayError(exitCode: number, stderr: string): Error {
    if (exitCode === RELAY_REFUSED) {
      return new PortClosedError(`nothing listens on port ${this.port} in ${this.label}`, this.port, {
        hint: 'start the server in the sandbox first, on 127.0.0.1 or 0.0.0.0',
      });
    }
    return new ConflictError(
      `could not reach port ${this.port} in ${this.label}: ${stderr || `relay exited ${exitCode}`}`,
    );
  }

  override _read(): void {
    if (this.held === 0) return;
    this.handle.ack(this.held);
    this.held = 0;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    try {
      this.handle.writeStdin(chunk);
    } catch (err) {
      callback(err as Error);
      return;
    }
    this.agent.writable().then(() => callback(), callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    try {
      this.handle.closeStdin();
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    try {
      this.handle.kill('SIGKILL');
    } catch {
      // the channel is gone, and the relay with it
    }
    callback(err);
  }
}

/**
 * A stream to `port` on the sandbox's loopback. It errors with a
 * PortClosedError when nothing listens there; destroying it ends the relay.
 */
export function connectGuestPort(agent: AgentClient, port: number, label: string): Duplex {
  return new GuestPortStream(agent, checkGuestPort(port), label);
}
