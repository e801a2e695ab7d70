// The one way forkd connects to a unix stream socket (QMP, the guest agent's
// chardev, a writer's agent port): honours an abort signal, and hands the
// socket over with no listeners of its own left on it.
import net from 'node:net';
import { abortReason } from './abort.js';

/** Connect to `path`; rejects with the socket's error (ENOENT, ECONNREFUSED…) or the signal's reason. */
export function connectUnix(path: string, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(abortReason(signal));
      return;
    }
    const socket = net.createConnection({ path });
    const settle = () => {
      signal.removeEventListener('abort', onAbort);
      socket.off('error', onError);
      socket.off('connect', onConnect);
    };
    const onAbort = () => {
      settle();
      socket.destroy();
      reject(abortReason(signal));
    };
    const onError = (err: Error) => {
      settle();
      socket.destroy();
      reject(err);
    };
    const onConnect = () => {
      settle();
      resolve(socket);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('error', onError);
    socket.once('connect', onConnect);
  });
}
