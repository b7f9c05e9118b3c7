import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AbortedError, BackendUnavailableError, InvalidArgumentError, PeerLostError, TimeoutError } from '../lib/errors.js';
import { encodeFrame, ErrorCode, lengthPrefixed, Op, StoreClient, StoreServer } from '../lib/store.js';
import { errorCodeOf, RawPeer } from './storeRawClient.js';

const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b).toString('utf8'));

const servers: StoreServer[] = [];
const clients: StoreClient[] = [];

async function serve(opts: Partial<Parameters<typeof StoreServer.listen>[0]> = {}): Promise<StoreServer> {
  const s = await StoreServer.listen({ port: 0, token: '', ...opts });
  servers.push(s);
  return s;
}

async function connect(server: StoreServer, opts: Partial<Parameters<typeof StoreClient.connect>[0]> = {}): Promise<StoreClient> {
  const c = await StoreClient.connect({ host: '127.0.0.1', port: server.port, token: '', timeoutMs: 5000, ...opts });
  clients.push(c);
  return c;
}

beforeEach(() => {
  // A token in the developer's environment must not change what these tests see.
  vi.stubEnv('RINGTREE_TOKEN', '');
  vi.stubEnv('RINGTREE_INSECURE', '');
});

afterEach(async () => {
  vi.unstubAllEnvs();
  for (const c of clients.splice(0)) c.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('store operations', () => {
  it('set / get / tryGet round-trip strings and bytes', async () => {
    const c = await connect(await serve());
    await c.set('a', 'hello');
    expect(text(await c.get('a'))).toBe('hello');
    const bytes = new Uint8Array([0, 1, 2, 255]);
    await c.set('b', bytes);
    expect([...(await c.get('b'))]).toEqual([0, 1, 2, 255]);
    expect(await c.tryGet('missing')).toBeUndefined();
    expect(text(await c.tryGet('a'))).toBe('hello');
    await c.set('a', 'overwritten');
    expect(text(await c.get('a'))).toBe('overwritten');
    await c.set('empty', '');
    expect((await c.get('empty')).length).toBe(0);
  });

  it('stores a value given as a subarray view exactly', async () => {
    const c = await connect(await serve());
    const backing = new Uint8Array([9, 9, 1, 2, 3, 9]);
    await c.set('view', backing.subarray(2, 5));
    expect([...(await c.get('view'))]).toEqual([1, 2, 3]);
  });

  it('add counts from zero, accepts negatives, and refuses non-integers', async () => {
    const c = await connect(await serve());
    expect(await c.add('n', 1)).toBe(1);
    expect(await c.add('n', 5)).toBe(6);
    expect(await c.add('n', -10)).toBe(-4);
    expect(text(await c.get('n'))).toBe('-4');
    await c.set('s', 'not a number');
    await expect(c.add('s', 1)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(c.add('n', 1.5)).rejects.toBeInstanceOf(InvalidArgumentError);
    // The connection survives a semantic error.
    expect(await c.add('n', 4)).toBe(0);
  });

  it('concurrent adds from many clients are atomic', async () => {
    const server = await serve();
    const cs = await Promise.all(Array.from({ length: 4 }, () => connect(server)));
    const results = await Promise.all(cs.flatMap((c) => Array.from({ length: 25 }, () => c.add('ctr', 1))));
    expect(results.sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  it('compareSet follows PyTorch semantics', async () => {
    const c = await connect(await serve());
    // Missing key, empty expected: set.
    expect(text(await c.compareSet('k', '', 'first'))).toBe('first');
    // Matching expected: swap.
    expect(text(await c.compareSet('k', 'first', 'second'))).toBe('second');
    // Mismatch: unchanged, current value returned.
    expect(text(await c.compareSet('k', 'nope', 'third'))).toBe('second');
    expect(text(await c.get('k'))).toBe('second');
    // Missing key, non-empty expected: nothing set, expected echoed.
    expect(text(await c.compareSet('other', 'x', 'y'))).toBe('x');
    expect(await c.tryGet('other')).toBeUndefined();
  });

  it('delete reports whether the key existed', async () => {
    const c = await connect(await serve());
    await c.set('d', '1');
    expect(await c.delete('d')).toBe(true);
    expect(await c.delete('d')).toBe(false);
    expect(await c.tryGet('d')).toBeUndefined();
  });

  it('get blocks until another client sets the key', async () => {
    const server = await serve();
    const a = await connect(server);
    const b = await connect(server);
    let done = false;
    const pending = a.get('later').then((v) => {
      done = true;
      return text(v);
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false);
    await b.set('later', 'now');
    expect(await pending).toBe('now');
  });

  it('many concurrent waiters on one connection and across connections all wake', async () => {
    const server = await serve();
    const a = await connect(server);
    const b = await connect(server);
    const gets = [...Array.from({ length: 20 }, () => a.get('go')), ...Array.from({ length: 20 }, () => b.get('go'))];
    const waits = [a.wait(['go', 'also']), b.wait(['also'])];
    await b.set('go', 'x');
    expect((await Promise.all(gets)).map(text)).toEqual(Array(40).fill('x'));
    let waitsDone = false;
    void Promise.all(waits).then(() => (waitsDone = true));
    await new Promise((r) => setTimeout(r, 30));
    expect(waitsDone).toBe(false);
    await a.set('also', 'y');
    await Promise.all(waits);
  });

  it('wait returns at once when every key exists', async () => {
    const c = await connect(await serve());
    await c.set('x', '1');
    await c.set('y', '2');
    await c.wait(['x', 'y']);
    await c.wait([]);
  });

  it('compareSet and add wake waiters too', async () => {
    const server = await serve();
    const a = await connect(server);
    const b = await connect(server);
    const g1 = a.get('cas');
    const g2 = a.wait(['ctr']);
    await b.compareSet('cas', '', 'v');
    await b.add('ctr', 3);
    expect(text(await g1)).toBe('v');
    await g2;
  });

  it('get times out with a TimeoutError naming the key and the address', async () => {
    const server = await serve();
    const c = await connect(server);
    const t0 = Date.now();
    const err = await c.get('never', { timeoutMs: 200 }).catch((e: unknown) => e);
    const elapsed = Date.now() - t0;
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toContain('"never"');
    expect((err as Error).message).toContain(`127.0.0.1:${server.port}`);
    expect((err as TimeoutError).op).toBe('store.get');
    expect((err as TimeoutError).timeoutMs).toBe(200);
    expect(elapsed).toBeGreaterThanOrEqual(180);
    expect(elapsed).toBeLessThan(2000);
    // The connection is still usable after a timeout.
    await c.set('after', '1');
  });

  it('wait times out naming the missing key', async () => {
    const c = await connect(await serve());
    await c.set('present', '1');
    const err = await c.wait(['present', 'absent'], { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toContain('absent');
    expect((err as Error).message).not.toContain('"present"');
  });

  it('a key set after a timed-out get does not confuse later requests', async () => {
    const c = await connect(await serve());
    await expect(c.get('late', { timeoutMs: 100 })).rejects.toBeInstanceOf(TimeoutError);
    await c.set('late', 'v');
    expect(text(await c.get('late', { timeoutMs: 100 }))).toBe('v');
  });

  it('rejects bad timeouts before sending', async () => {
    const c = await connect(await serve());
    await expect(c.get('k', { timeoutMs: Infinity })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(c.wait(['k'], { timeoutMs: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('prefix views', () => {
  it('prefix the keys and nest', async () => {
    const c = await connect(await serve());
    const a = c.prefix('a');
    const ab = a.prefix('b');
    await a.set('k', '1');
    await ab.set('k', '2');
    expect(text(await c.get('a/k'))).toBe('1');
    expect(text(await c.get('a/b/k'))).toBe('2');
    expect(text(await ab.get('k'))).toBe('2');
    expect(text(await a.get('b/k'))).toBe('2');
    expect(await ab.tryGet('missing')).toBeUndefined();
    expect(await ab.add('n', 2)).toBe(2);
    expect(text(await c.tryGet('a/b/n'))).toBe('2');
    expect(text(await ab.compareSet('n', '2', '7'))).toBe('7');
    await ab.wait(['k', 'n']);
    expect(await ab.delete('k')).toBe(true);
    expect(await c.tryGet('a/b/k')).toBeUndefined();
    expect(text(await c.get('a/k'))).toBe('1');
  });

  it('views of the same prefix do not see each other\'s siblings', async () => {
    const c = await connect(await serve());
    await c.prefix('x').set('k', 'x');
    await c.prefix('y').set('k', 'y');
    expect(text(await c.prefix('x').get('k'))).toBe('x');
    expect(text(await c.prefix('y').get('k'))).toBe('y');
  });

  it('name the full key in timeouts', async () => {
    const c = await connect(await serve());
    const err = await c.prefix('p').prefix('q').get('k', { timeoutMs: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toContain('p/q/k');
  });

  it('refuse an empty prefix', async () => {
    const c = await connect(await serve());
    expect(() => c.prefix('')).toThrow(InvalidArgumentError);
  });
});

describe('barrier', () => {
  it('releases all ranks together and is reusable', async () => {
    const server = await serve();
    const cs = await Promise.all(Array.from({ length: 3 }, (_, rank) => connect(server, { rank })));
    for (let round = 0; round < 3; round++) {
      await Promise.all(cs.map((c) => c.prefix('job').barrier('sync', 3, { timeoutMs: 2000 })));
    }
  });

  it('does not release early', async () => {
    const server = await serve();
    const [a, b] = await Promise.all([connect(server), connect(server)]);
    let released = false;
    const first = a.barrier('b', 2).then(() => (released = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(released).toBe(false);
    await b.barrier('b', 2);
    await first;
  });

  it('times out saying how many arrived', async () => {
    const server = await serve();
    const [a, b] = await Promise.all([connect(server), connect(server)]);
    const pa = a.barrier('lonely', 3, { timeoutMs: 200 }).catch((e: unknown) => e);
    const pb = b.barrier('lonely', 3, { timeoutMs: 200 }).catch((e: unknown) => e);
    for (const err of await Promise.all([pa, pb])) {
      expect(err).toBeInstanceOf(TimeoutError);
      expect((err as Error).message).toContain('2 of 3');
    }
  });
});

describe('limits and bad input', () => {
  it('rejects oversized and empty keys locally', async () => {
    const c = await connect(await serve());
    await expect(c.set('k'.repeat(4097), 'v')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(c.set('', 'v')).rejects.toBeInstanceOf(InvalidArgumentError);
    await c.set('k'.repeat(4096), 'v'); // exactly the limit is fine
  });

  it('rejects oversized values against a configured limit', async () => {
    const server = await serve({ maxValueBytes: 1024 });
    const c = await connect(server, { maxValueBytes: 1024 });
    await expect(c.set('k', new Uint8Array(1025))).rejects.toBeInstanceOf(InvalidArgumentError);
    await c.set('k', new Uint8Array(1024));
    expect((await c.get('k')).length).toBe(1024);
  });

  it('the server refuses a value over its limit even from a client with a larger one', async () => {
    const server = await serve({ maxValueBytes: 1024 });
    const c = await connect(server, { maxValueBytes: 4096 });
    const err = await c.set('k', new Uint8Array(2048)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(/exceeds the limit of 1024/);
  });

  it('answers an oversized frame with an error and closes', async () => {
    const server = await serve({ maxValueBytes: 1024 });
    const peer = await RawPeer.handshake(server.port);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(0x7fffffff);
    peer.send(header);
    const reply = await peer.next();
    expect(reply.op).toBe(Op.ERROR);
    expect(errorCodeOf(reply)).toBe(ErrorCode.TOO_LARGE);
    await peer.closedPromise;
  });

  it('answers an oversized key inside a frame with an error and closes', async () => {
    const server = await serve();
    const peer = await RawPeer.handshake(server.port);
    peer.send(encodeFrame(Op.SET, 7, [...lengthPrefixed(Buffer.alloc(5000, 97)), ...lengthPrefixed(Buffer.from('v'))]));
    const reply = await peer.next();
    expect(reply.op).toBe(Op.ERROR);
    expect(reply.requestId).toBe(7);
    expect(errorCodeOf(reply)).toBe(ErrorCode.TOO_LARGE);
    await peer.closedPromise;
  });

  it('answers an unknown opcode with an error and closes', async () => {
    const server = await serve();
    const peer = await RawPeer.handshake(server.port);
    peer.send(encodeFrame(0x55, 42, [Buffer.from('whatever')]));
    const reply = await peer.next();
    expect(reply.op).toBe(Op.ERROR);
    expect(reply.requestId).toBe(42);
    expect(errorCodeOf(reply)).toBe(ErrorCode.UNKNOWN_OP);
    expect(reply.payload.subarray(2).toString()).toContain('unknown opcode 0x55');
    await peer.closedPromise;
  });

  it('answers a truncated payload with an error and closes', async () => {
    const server = await serve();
    const peer = await RawPeer.handshake(server.port);
    peer.send(encodeFrame(Op.SET, 3, [Buffer.from([0, 0, 0, 9, 1])]));
    const reply = await peer.next();
    expect(reply.op).toBe(Op.ERROR);
    expect(errorCodeOf(reply)).toBe(ErrorCode.MALFORMED);
    await peer.closedPromise;
  });

  it('keeps serving other clients after garbage, and refuses ops before the handshake', async () => {
    const server = await serve();
    const good = await connect(server);
    await good.set('k', 'v');
    const junk = await RawPeer.open(server.port);
    await junk.next(); // HELLO
    junk.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await junk.closedPromise;
    // An op sent without a handshake is refused.
    const early = await RawPeer.open(server.port);
    await early.next();
    early.send(encodeFrame(Op.GET, 1, [Buffer.from([0, 0, 0, 1]), ...lengthPrefixed(Buffer.from('k'))]));
    const reply = await early.next();
    expect(reply.op).toBe(Op.ERROR);
    await early.closedPromise;
    expect(text(await good.get('k'))).toBe('v');
    const fresh = await connect(server);
    expect(text(await fresh.get('k'))).toBe('v');
  });

  it('stops reading a client that does not read its replies (back-pressure)', async () => {
    const server = await serve();
    const c = await connect(server);
    await c.set('big', new Uint8Array(1024 * 1024));
    const peer = await RawPeer.handshake(server.port);
    peer.socket.pause();
    const n = 100; // 100 MiB of replies if nothing pushed back
    peer.send(Buffer.concat(Array.from({ length: n }, (_, i) => encodeFrame(Op.TRY_GET, i + 1, lengthPrefixed(Buffer.from('big'))))));
    const internals = server as unknown as { connections: Set<{ socket: net.Socket }> };
    let maxBuffered = 0;
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 10));
      for (const conn of internals.connections) maxBuffered = Math.max(maxBuffered, conn.socket.writableLength);
    }
    expect(maxBuffered).toBeGreaterThan(0);
    expect(maxBuffered).toBeLessThan(20 * 1024 * 1024);
    peer.socket.resume();
    const ids = new Set<number>();
    while (ids.size < n) {
      const f = await peer.next(10_000);
      expect(f.op).toBe(Op.VALUE);
      expect(f.payload.length).toBe(1024 * 1024);
      ids.add(f.requestId);
    }
    peer.destroy();
    // Other clients were served throughout.
    expect((await c.get('big')).length).toBe(1024 * 1024);
  });

  it('a client pointed at something that is not a store fails clearly', async () => {
    const impostor = net.createServer((s) => s.end('SSH-2.0-OpenSSH_9.6\r\n'));
    await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', r));
    const port = (impostor.address() as net.AddressInfo).port;
    try {
      const err = await StoreClient.connect({ host: '127.0.0.1', port, token: '', timeoutMs: 2000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BackendUnavailableError);
      expect((err as Error).message).toContain('not a ringtree store');
    } finally {
      impostor.close();
    }
  });
});

describe('authentication', () => {
  it('a matching token connects', async () => {
    const server = await serve({ token: 's3cret' });
    const c = await connect(server, { token: 's3cret' });
    await c.set('k', 'v');
    expect(text(await c.get('k'))).toBe('v');
  });

  it('reads RINGTREE_TOKEN from the environment on both sides', async () => {
    vi.stubEnv('RINGTREE_TOKEN', 'from-env');
    const server = await StoreServer.listen({ port: 0 });
    servers.push(server);
    const c = await StoreClient.connect({ host: '127.0.0.1', port: server.port, timeoutMs: 2000 });
    clients.push(c);
    await c.set('k', 'v');
    const bad = await StoreClient.connect({ host: '127.0.0.1', port: server.port, token: 'other', timeoutMs: 2000 }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(BackendUnavailableError);
  });

  it('a wrong token is a BackendUnavailableError saying so, at once', async () => {
    const server = await serve({ token: 'right' });
    const t0 = Date.now();
    const err = await StoreClient.connect({ host: '127.0.0.1', port: server.port, token: 'wrong', timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toContain('wrong token');
    expect((err as BackendUnavailableError).remedy).toContain('RINGTREE_TOKEN');
    expect(Date.now() - t0).toBeLessThan(5000); // not retried until the deadline
  });

  it('no token against a server that requires one fails with a remedy', async () => {
    const server = await serve({ token: 'right' });
    const err = await StoreClient.connect({ host: '127.0.0.1', port: server.port, token: '', timeoutMs: 5000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toContain('requires a token');
  });

  it('the server drops a raw peer that skips the proof', async () => {
    const server = await serve({ token: 'right' });
    await expect(RawPeer.handshake(server.port)).rejects.toThrow();
    await expect(RawPeer.handshake(server.port, 'wrong')).rejects.toThrow();
    const ok = await RawPeer.handshake(server.port, 'right');
    ok.destroy();
  });

  it('a client with a token refuses a server that cannot prove it knows the token', async () => {
    const server = await serve({ token: '' });
    const err = await StoreClient.connect({ host: '127.0.0.1', port: server.port, token: 'mine', timeoutMs: 5000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toContain('does not require a token');
  });

  it('refuses a non-loopback bind without a token unless insecure', async () => {
    await expect(StoreServer.listen({ host: '0.0.0.0', port: 0, token: '' })).rejects.toBeInstanceOf(InvalidArgumentError);
    vi.stubEnv('RINGTREE_INSECURE', '1');
    const s = await StoreServer.listen({ host: '0.0.0.0', port: 0, token: '' });
    servers.push(s);
    vi.stubEnv('RINGTREE_INSECURE', '');
    const explicit = await StoreServer.listen({ host: '0.0.0.0', port: 0, token: '', insecure: true });
    servers.push(explicit);
    const withToken = await StoreServer.listen({ host: '0.0.0.0', port: 0, token: 't' });
    servers.push(withToken);
  });
});

describe('listen and connect failures', () => {
  it('port in use is a BackendUnavailableError naming host:port with a remedy', async () => {
    const first = await serve();
    const err = await StoreServer.listen({ port: first.port, token: '' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toContain(`127.0.0.1:${first.port}`);
    expect((err as Error).message).toContain('port in use');
    expect((err as BackendUnavailableError).remedy).toContain('MASTER_PORT');
  });

  it('connect retries until the server starts', async () => {
    const probe = await serve();
    const port = probe.port;
    await probe.close();
    servers.length = 0;
    const pending = StoreClient.connect({ host: '127.0.0.1', port, token: '', timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 300));
    const late = await serve({ port });
    const c = await pending;
    clients.push(c);
    await c.set('k', 'v');
    expect(late.port).toBe(port);
  });

  it('connect gives up at its deadline with a TimeoutError naming the address', async () => {
    const probe = await serve();
    const port = probe.port;
    await probe.close();
    servers.length = 0;
    const t0 = Date.now();
    const err = await StoreClient.connect({ host: '127.0.0.1', port, token: '', timeoutMs: 300, rank: 3 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toContain(`127.0.0.1:${port}`);
    expect((err as TimeoutError).rank).toBe(3);
    expect(Date.now() - t0).toBeLessThan(3000);
  });
});

describe('connection loss', () => {
  it('pending requests reject with PeerLostError when the server goes away', async () => {
    const server = await serve();
    const c = await connect(server);
    const pending = c.get('never', { timeoutMs: 60_000 }).catch((e: unknown) => e);
    const pendingWait = c.wait(['never'], { timeoutMs: 60_000 }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 30));
    await server.close();
    for (const err of [await pending, await pendingWait]) {
      expect(err).toBeInstanceOf(PeerLostError);
      expect((err as Error).message).toContain(`127.0.0.1:${server.port}`);
    }
    // Later calls fail at once too.
    await expect(c.set('k', 'v')).rejects.toBeInstanceOf(PeerLostError);
  });

  it('closing a client rejects its pending calls and cancels its server-side waiters', async () => {
    const server = await serve();
    const a = await connect(server);
    const b = await connect(server);
    const pending = a.get('k', { timeoutMs: 60_000 }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 30));
    a.close();
    expect(await pending).toBeInstanceOf(AbortedError);
    // The server must not trip over the dead waiter when the key arrives.
    await b.set('k', 'v');
    expect(text(await b.get('k'))).toBe('v');
    const internals = server as unknown as { waitersByKey: Map<string, unknown> };
    expect(internals.waitersByKey.size).toBe(0);
  });

  it('a client killed mid-wait leaves no waiter behind', async () => {
    const server = await serve();
    const peer = await RawPeer.handshake(server.port);
    const timeout = Buffer.alloc(4);
    timeout.writeUInt32BE(60_000);
    peer.send(encodeFrame(Op.WAIT, 1, [timeout, Buffer.from([0, 0, 0, 2]), ...lengthPrefixed(Buffer.from('x')), ...lengthPrefixed(Buffer.from('y'))]));
    const internals = server as unknown as { waitersByKey: Map<string, unknown> };
    for (let i = 0; i < 50 && internals.waitersByKey.size === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(internals.waitersByKey.size).toBe(2);
    peer.destroy();
    for (let i = 0; i < 50 && internals.waitersByKey.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(internals.waitersByKey.size).toBe(0);
  });
});

describe('process lifetime', () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const distStore = path.join(root, 'dist', 'store.js');

  function ensureCompiled(): void {
    const src = path.join(root, 'lib', 'store.ts');
    const stale = !fs.existsSync(distStore) || fs.statSync(distStore).mtimeMs < fs.statSync(src).mtimeMs;
    if (stale) {
      // Other modules may have type errors mid-edit; tsc still emits, so the exit status is ignored.
      spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'tsconfig.json')], { stdio: 'ignore' });
    }
    if (!fs.existsSync(distStore)) throw new Error('dist/store.js is missing; run `npx tsc -p tsconfig.json`');
  }

  function runScript(body: string): Promise<{ code: number | null; stderr: string; ms: number }> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringtree-store-'));
    const file = path.join(dir, 'child.mjs');
    fs.writeFileSync(file, `import { StoreServer, StoreClient } from ${JSON.stringify(distStore)};\n${body}\n`);
    const t0 = Date.now();
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [file], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RINGTREE_TOKEN: 'child-token' } });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.on('exit', (code) => {
        clearTimeout(kill);
        fs.rmSync(dir, { recursive: true, force: true });
        resolve({ code, stderr, ms: Date.now() - t0 });
      });
    });
  }

  it('a script that connects, sets and never closes still exits', async () => {
    ensureCompiled();
    const server = await serve({ token: 'child-token' });
    const r = await runScript(`
      const c = await StoreClient.connect({ host: '127.0.0.1', port: ${server.port} });
      await c.set('from-child', 'hi');
      await c.get('from-child');
    `);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.ms).toBeLessThan(10_000);
    const c = await connect(server, { token: 'child-token' });
    expect(text(await c.get('from-child'))).toBe('hi');
  });

  it('a script that hosts a server and a client and closes neither still exits', async () => {
    ensureCompiled();
    const r = await runScript(`
      const s = await StoreServer.listen({ port: 0 });
      const c = await StoreClient.connect({ host: '127.0.0.1', port: s.port });
      await c.set('k', 'v');
      const pending = c.get('k');
      await pending;
    `);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('a pending get keeps the script alive until it settles', async () => {
    ensureCompiled();
    const r = await runScript(`
      const s = await StoreServer.listen({ port: 0 });
      const c = await StoreClient.connect({ host: '127.0.0.1', port: s.port });
      const t0 = Date.now();
      await c.get('never', { timeoutMs: 300 }).catch((e) => { if (e.name !== 'TimeoutError') throw e; });
      if (Date.now() - t0 < 250) throw new Error('returned early');
    `);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});
