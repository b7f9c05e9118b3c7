// Fuzzes the server's framing and request parser with random and mutated-valid
// frames. Seeded, so a failure reproduces: rerun with the printed seed
// (RINGTREE_FUZZ_SEED=<n>). The property: the server never crashes, every
// connection either gets well-formed replies or is closed, and a well-formed
// client is still served afterwards.
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { encodeFrame, ErrorCode, lengthPrefixed, Op, StoreClient, StoreServer } from '../lib/store.js';
import { errorCodeOf, RawPeer, seededRandom } from './storeRawClient.js';

const SEED = Number(process.env.RINGTREE_FUZZ_SEED ?? 0x5eed);
const CASES = 3000;

let server: StoreServer;
let uncaught: unknown[] = [];
const onUncaught = (e: unknown) => uncaught.push(e);

beforeAll(async () => {
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  server = await StoreServer.listen({ port: 0, token: '', maxValueBytes: 4096 });
});

afterAll(async () => {
  process.off('uncaughtException', onUncaught);
  process.off('unhandledRejection', onUncaught);
  await server.close();
});

beforeEach(() => {
  vi.stubEnv('RINGTREE_TOKEN', '');
  uncaught = [];
});

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};

/** A valid request of a random kind. */
function validFrame(rand: () => number, id: number): Buffer {
  const key = () => lengthPrefixed(Buffer.from(`k${Math.floor(rand() * 8)}`));
  const value = () => lengthPrefixed(Buffer.from(String(Math.floor(rand() * 100))));
  switch (Math.floor(rand() * 7)) {
    case 0: return encodeFrame(Op.SET, id, [...key(), ...value()]);
    case 1: return encodeFrame(Op.GET, id, [u32(Math.floor(rand() * 20)), ...key()]);
    case 2: return encodeFrame(Op.TRY_GET, id, key());
    case 3: {
      const d = Buffer.alloc(8);
      d.writeBigInt64BE(BigInt(Math.floor(rand() * 10) - 5));
      return encodeFrame(Op.ADD, id, [...key(), d]);
    }
    case 4: return encodeFrame(Op.COMPARE_SET, id, [...key(), ...value(), ...value()]);
    case 5: return encodeFrame(Op.WAIT, id, [u32(Math.floor(rand() * 20)), u32(2), ...key(), ...key()]);
    default: return encodeFrame(Op.DELETE, id, key());
  }
}

function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** Flip, insert, delete or overwrite bytes, or rewrite a length field. */
function mutate(rand: () => number, frame: Buffer): Buffer {
  let b = Buffer.from(frame);
  const edits = 1 + Math.floor(rand() * 3);
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(rand() * Math.max(b.length, 1));
    switch (Math.floor(rand() * 5)) {
      case 0: b[at] = (b[at] ?? 0) ^ (1 << Math.floor(rand() * 8)); break;
      case 1: b = Buffer.concat([b.subarray(0, at), randomBytes(rand, 1 + Math.floor(rand() * 8)), b.subarray(at)]); break;
      case 2: b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + Math.floor(rand() * 4))]); break;
      case 3: b[at] = Math.floor(rand() * 256); break;
      default: {
        // Lengths are where parsers break: the frame length or a field length.
        const pos = rand() < 0.5 ? 0 : Math.min(9 + Math.floor(rand() * 8), Math.max(b.length - 4, 0));
        if (b.length >= pos + 4) b.writeUInt32BE([0, 1, 4, 5, 0xffffffff, 0x7fffffff, b.length, Math.floor(rand() * 2 ** 32)][Math.floor(rand() * 8)]! >>> 0, pos);
      }
    }
  }
  return b;
}

function isWellFormedReply(op: number): boolean {
  return [Op.OK, Op.VALUE, Op.NOT_FOUND, Op.BOOL, Op.ERROR].includes(op as never);
}

describe(`store framing fuzz (seed ${SEED})`, () => {
  it(`survives ${CASES} random and mutated frames and still serves a good client`, async () => {
    const rand = seededRandom(SEED);
    // Build every case first so the byte streams do not depend on timing.
    const cases: Buffer[][] = [];
    for (let i = 0; i < CASES; i++) {
      const frames: Buffer[] = [];
      // Valid requests before the bad one: the server must answer them, then cope.
      const lead = Math.floor(rand() * 3);
      for (let j = 0; j < lead; j++) frames.push(validFrame(rand, j + 1));
      const kind = rand();
      let bad: Buffer;
      if (kind < 0.15) bad = validFrame(rand, 100);
      else if (kind < 0.3) bad = randomBytes(rand, Math.floor(rand() * 64));
      else if (kind < 0.4) bad = encodeFrame(Math.floor(rand() * 256), 100, [randomBytes(rand, Math.floor(rand() * 32))]);
      else {
        bad = mutate(rand, validFrame(rand, 100));
        // Half the time keep the outer length honest, so the payload parser
        // (not just the frame reader) sees the damage.
        if (rand() < 0.5 && bad.length >= 4) bad.writeUInt32BE(bad.length - 4, 0);
      }
      frames.push(bad);
      cases.push(frames);
    }
    let next = 0;
    let closedByServer = 0;
    const worker = async () => {
      for (let i = next++; i < CASES; i = next++) {
        const peer = await RawPeer.handshake(server.port);
        const bytes = Buffer.concat(cases[i]!);
        // Deliver in random pieces: the reader must not depend on chunk
        // boundaries. A per-case PRNG keeps this reproducible across workers.
        const split = seededRandom(SEED * 7919 + i);
        let off = 0;
        while (off < bytes.length) {
          const n = 1 + Math.floor(split() * bytes.length);
          peer.send(bytes.subarray(off, off + n));
          off += n;
        }
        // Half-close: the server answers what it parsed, then closes. It must
        // close (a dropped or stuck connection shows up as this timeout).
        peer.socket.end();
        const closed = await Promise.race([peer.closedPromise.then(() => true), new Promise((r) => setTimeout(() => r(false), 5000))]);
        if (!closed) throw new Error(`case ${i} (seed ${SEED}): server did not close the connection`);
        for (const f of peer.frames) {
          if (!isWellFormedReply(f.op)) throw new Error(`case ${i} (seed ${SEED}): reply opcode 0x${f.op.toString(16)}`);
          // An INTERNAL error means the parser threw something it did not mean to: a bug.
          if (f.op === Op.ERROR && errorCodeOf(f) === ErrorCode.INTERNAL) {
            throw new Error(`case ${i} (seed ${SEED}): internal error: ${f.payload.subarray(2).toString()}`);
          }
          if (f.op === Op.ERROR) closedByServer++;
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    expect(closedByServer).toBeGreaterThan(CASES / 4);
    expect(uncaught).toEqual([]);

    // A well-formed client is served normally afterwards.
    const client = await StoreClient.connect({ host: '127.0.0.1', port: server.port, token: '', timeoutMs: 5000 });
    try {
      await client.set('after-fuzz', 'ok');
      expect(Buffer.from(await client.get('after-fuzz')).toString()).toBe('ok');
      expect(await client.add('after-fuzz-counter', 2)).toBe(2);
    } finally {
      client.close();
    }
  });

  it('survives garbage before the handshake', async () => {
    const rand = seededRandom(SEED + 1);
    for (let i = 0; i < 200; i++) {
      const peer = await RawPeer.open(server.port);
      peer.send(rand() < 0.5 ? randomBytes(rand, Math.floor(rand() * 200)) : mutate(rand, encodeFrame(Op.HELLO_REPLY, 0, [Buffer.from('RTKV'), Buffer.from([0, 1]), randomBytes(rand, 32), ...lengthPrefixed(Buffer.alloc(0))])));
      await new Promise((r) => setTimeout(r, 1));
      peer.destroy();
    }
    expect(uncaught).toEqual([]);
    const client = await StoreClient.connect({ host: '127.0.0.1', port: server.port, token: '', timeoutMs: 5000 });
    try {
      await client.set('after-garbage', 'ok');
      expect(Buffer.from(await client.get('after-garbage')).toString()).toBe('ok');
    } finally {
      client.close();
    }
  });

  it('a valid-frame replay gets exactly one well-formed reply per request', async () => {
    const rand = seededRandom(SEED + 2);
    const peer = await RawPeer.handshake(server.port);
    const n = 500;
    const stream = Buffer.concat(Array.from({ length: n }, (_, i) => validFrame(rand, i + 1)));
    // One big write split at random points.
    let off = 0;
    while (off < stream.length) {
      const len = 1 + Math.floor(rand() * 97);
      peer.send(stream.subarray(off, off + len));
      off += len;
    }
    const seen = new Set<number>();
    while (seen.size < n) {
      const f = await peer.next(5000);
      expect(isWellFormedReply(f.op)).toBe(true);
      expect(seen.has(f.requestId)).toBe(false);
      seen.add(f.requestId);
    }
    peer.destroy();
  });
});
