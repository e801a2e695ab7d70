// Property tests of what reads a pack from the network: the manifest check,
// the sparse map reader, pax records and the raw tar structure check. Any
// input either parses or fails with the reader's own error class; a valid
// sparse map survives any split, and no region of an accepted one lies
// outside its file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { CorruptError, IncompatibleError } from '../../src/errors.js';
import { parsePackManifest } from '../../src/hub/pack-manifest.js';
import { encodeSparseMap, SparseMapError, SparseMapReader, type Extent } from '../../src/hub/sparse.js';
import { parsePaxRecords, TarStructureError, tarStructureGuard } from '../../src/hub/tar-guard.js';
import { fuzzParams } from './settings.js';

const manifestLike = fc.record(
  {
    format: fc.constantFrom('forkd-pack', 'x', 1),
    format_version: fc.oneof(fc.integer({ min: -1, max: 3 }), fc.string()),
    tag: fc.oneof(fc.constantFrom('ok', '../x', ''), fc.string()),
    description: fc.string(),
    created_at: fc.string(),
    forkd_version: fc.string(),
    machine: fc.record({
      qemu_version: fc.string(),
      machine_type: fc.string(),
      cpu_model: fc.string(),
      accel: fc.string(),
      memory_mib: fc.integer({ min: -1, max: 1 << 22 }),
      vcpus: fc.integer({ min: 0, max: 4 }),
    }),
    base_image: fc.record({ recipe: fc.string(), content_hash: fc.string(), kernel: fc.string() }),
    files: fc.array(
      fc.record({
        path: fc.constantFrom('memory', 'vmstate', 'vmlinux', 'initrd.img', 'snapshot.json', '../x', 'other'),
        size: fc.oneof(fc.nat(), fc.constant(2 ** 40), fc.constant(-1)),
        sha256: fc.constantFrom('0'.repeat(64), 'zz'),
        stored_bytes: fc.nat(),
      }),
      { maxLength: 8 },
    ),
    chain: fc.array(fc.anything(), { maxLength: 1 }),
    compression: fc.record({ codec: fc.constantFrom('zstd', 'gzip'), window_log: fc.integer() }),
  },
  { requiredKeys: [] },
);

test('any manifest value parses or is refused as corrupt or incompatible', () => {
  fc.assert(
    fc.property(fc.oneof(manifestLike, fc.jsonValue()), (value) => {
      try {
        const m = parsePackManifest(value, 'fuzz');
        // What passes is internally consistent.
        const memory = m.files.find((f) => f.path === 'memory');
        assert.equal(memory?.size, m.machine.memory_mib * 2 ** 20);
        for (const f of m.files) assert.ok(f.stored_bytes <= f.size);
      } catch (err) {
        assert.ok(err instanceof CorruptError || err instanceof IncompatibleError, String(err));
      }
    }),
    fuzzParams(),
  );
});

const regionsArb = fc
  .array(fc.tuple(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 8 })), { maxLength: 20 })
  .map((steps) => {
    const regions: Extent[] = [];
    let at = 0;
    for (const [gap, length] of steps) {
      at += gap * 4096;
      if (length > 0) regions.push({ offset: at, length: length * 4096 });
      at += length * 4096;
    }
    return { regions, size: at + 4096 };
  });

test('a valid sparse map reads back the same regions however it is split, with the data after it intact', () => {
  fc.assert(
    fc.property(regionsArb, fc.array(fc.nat(), { maxLength: 6 }), ({ regions, size }, cuts) => {
      const map = encodeSparseMap(regions, size);
      const bytes = Buffer.concat([map, Buffer.from('DATA')]);
      const reader = new SparseMapReader(size, { maxRegions: 1000 });
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      let at = 0;
      let result: ReturnType<SparseMapReader['push']> = null;
      const rest: Buffer[] = [];
      for (const p of [...points, bytes.length]) {
        const part = bytes.subarray(at, p);
        at = p;
        if (result) rest.push(part);
        else result = reader.push(part);
        if (result && rest.length === 0) rest.push(result.rest);
      }
      assert.ok(result);
      assert.deepEqual(result.regions, regions);
      assert.equal(Buffer.concat(rest).toString(), 'DATA');
    }),
    fuzzParams(),
  );
});

test('arbitrary sparse-map bytes are accepted only inside the file, or refused with a SparseMapError', () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.constantFrom('0', '1', '9', '\n', '\0', 'x'), fc.nat().map(String)), {
        maxLength: 64,
      }),
      fc.integer({ min: 0, max: 1 << 20 }),
      (tokens, size) => {
        const reader = new SparseMapReader(size, { maxRegions: 16 });
        try {
          const r = reader.push(Buffer.concat([Buffer.from(tokens.join('')), Buffer.alloc(512)]));
          for (const region of r?.regions ?? []) assert.ok(region.offset + region.length <= size);
        } catch (err) {
          assert.ok(err instanceof SparseMapError, String(err));
        }
      },
    ),
    fuzzParams(),
  );
});

test('pax records parse, or fail with a TarStructureError; numeric keys hold plain decimals only', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
        fc
          .array(fc.tuple(fc.constantFrom('size', 'path', 'GNU.sparse.realsize', 'x'), fc.string()), {
            maxLength: 4,
          })
          .map((records) =>
            Buffer.from(
              records
                .map(([k, v]) => {
                  const body = ` ${k}=${v}\n`;
                  let len = Buffer.byteLength(body) + 1;
                  while (String(len).length + Buffer.byteLength(body) !== len) len++;
                  return `${len}${body}`;
                })
                .join(''),
            ),
          ),
      ),
      (data) => {
        try {
          const records = parsePaxRecords(data);
          for (const key of ['size', 'GNU.sparse.realsize']) {
            const v = records.get(key);
            if (v !== undefined) assert.match(v, /^(0|[1-9][0-9]*)$/);
          }
        } catch (err) {
          assert.ok(err instanceof TarStructureError, String(err));
        }
      },
    ),
    fuzzParams(),
  );
});

test('the tar structure check passes bytes through unchanged or refuses them with its own error', async () => {
  class Refused extends Error {}
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.uint8Array({ minLength: 1, maxLength: 1024 }), { maxLength: 6 }),
      async (chunks) => {
        const out: Buffer[] = [];
        try {
          await pipeline(
            Readable.from(chunks.map((c) => Buffer.from(c))),
            tarStructureGuard((m) => new Refused(m)),
            new Writable({
              write(chunk: Buffer, _e, done) {
                out.push(chunk);
                done();
              },
            }),
          );
          assert.deepEqual(Buffer.concat(out), Buffer.concat(chunks.map((c) => Buffer.from(c))));
        } catch (err) {
          assert.ok(err instanceof Refused, String(err));
        }
      },
    ),
    fuzzParams(200),
  );
});
