// Newline-delimited JSON over a fetch body: yields one parsed value per line
// as the bytes arrive. Breaking out of the loop cancels the body, which
// closes the connection.

/** Parses `body` as NDJSON, one value per non-empty line. */
export async function* parseNdjson<T>(body: ReadableStream<Uint8Array>): AsyncGenerator<T, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffered += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (line) yield JSON.parse(line) as T;
      }
      if (done) break;
    }
    if (buffered.trim()) yield JSON.parse(buffered) as T;
  } finally {
    // Early exit (break, throw, abort): stop the download instead of leaking it.
    await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
