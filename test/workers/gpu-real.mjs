// Checks against the real CUDA driver and NCCL (no test doubles), on one GPU:
// what loaded, DeviceArray round trips and views for every dtype, and a
// one-rank NCCL communicator running every collective x dtype x op compared
// byte for byte with the same call on host arrays (CPU engine).
// Run by test/cuda.test.ts (RINGTREE_EXPECT_GPU=1) and scripts/gpu-check.mjs.
// Prints one JSON line { ok, checks, failures[], gpu }; exits 1 on any failure.
import { DeviceArray, init, newHost } from '../../dist/index.js';
import { probeGpu } from '../../dist/device.js';

const failures = [];
let checks = 0;
const check = (name, ok, detail) => {
  checks++;
  if (!ok) failures.push({ name, detail });
};
const bytesOf = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const same = (a, b) => bytesOf(a).equals(bytesOf(b));
const show = (a) => Array.from(a.slice(0, 8), String).join(',');
/** Where host (CPU engine) and device (NCCL) results differ: count, first index, values there. */
function diff(host, device) {
  let count = 0;
  let first = -1;
  for (let i = 0; i < host.length; i++) {
    if (host[i] !== device[i] && !(Number.isNaN(host[i]) && Number.isNaN(device[i]))) {
      count++;
      if (first < 0) first = i;
    }
  }
  return count === 0 ? 'same' : `${count} of ${host.length} differ, first [${first}] host ${String(host[first])} device ${String(device[first])}`;
}

const DTYPES = ['float32', 'float64', 'float16', 'bfloat16', 'int8', 'uint8', 'int32', 'int64'];
const OPS = ['sum', 'prod', 'max', 'min', 'avg'];
const SIZES = [0, 1, 7, 1031, 65537];

/** Deterministic values small enough for every dtype and op (no overflow, exact in 16-bit floats). */
function hostValues(dtype, n, salt) {
  const h = newHost(dtype, n);
  for (let i = 0; i < n; i++) {
    const v = ((i * 7 + salt * 3) % 5) + 1;
    if (dtype === 'int64') h[i] = BigInt(v);
    else if (dtype === 'float16') h[i] = [0x3c00, 0x4000, 0x4200, 0x4400, 0x4500][v - 1];  // 1..5
    else if (dtype === 'bfloat16') h[i] = [0x3f80, 0x4000, 0x4040, 0x4080, 0x40a0][v - 1];
    else h[i] = v;
  }
  return h;
}
const hostOpt = (dtype) => (dtype === 'float16' || dtype === 'bfloat16' ? { dtype } : {});

const probe = probeGpu();
const gpu = { driver: probe.info?.driver ?? null, devices: probe.info?.devices ?? [], nccl: probe.info?.nccl ?? null, driverError: probe.driverError, ncclError: probe.ncclError };
check('CUDA driver loaded', !probe.driverError, probe.driverError);
check('at least one GPU', gpu.devices.length > 0, JSON.stringify(gpu.devices));
check('NCCL loaded (2.18+)', !probe.ncclError && (gpu.nccl?.versionCode ?? 0) >= 21800, probe.ncclError ?? gpu.nccl?.version);
if (failures.length) {
  console.log(JSON.stringify({ ok: false, checks, failures, gpu }));
  process.exit(1);
}

// ---- DeviceArray: round trips, views, fill, device-to-device, fromPointer ----
for (const dtype of DTYPES) {
  for (const n of SIZES) {
    const h = hostValues(dtype, n, 1);
    const d = await DeviceArray.fromHost(h, hostOpt(dtype));
    const back = await d.toHost();
    check(`round trip ${dtype}[${n}]`, same(h, back), `${show(h)} -> ${show(back)}`);
    if (n >= 7) {
      const v = d.view(2, n - 4);
      const part = await v.toHost();
      check(`view ${dtype}[${n}](2, ${n - 4})`, same(part, h.subarray(2, n - 2)), show(part));
      await v.fill(dtype === 'int64' ? 3n : 3);
      const after = await d.toHost();
      const expect = h.slice();
      // 3 as stored in each host array kind (16-bit floats as bits)
      expect.fill(dtype === 'int64' ? 3n : dtype === 'float16' ? 0x4200 : dtype === 'bfloat16' ? 0x4040 : 3, 2, n - 2);
      check(`view fill ${dtype}[${n}]`, same(after, expect), show(after));
      const c = DeviceArray.alloc(dtype, n);
      await c.copyFromDevice(d);
      check(`copyFromDevice ${dtype}[${n}]`, same(await c.toHost(), expect), '');
      const shared = DeviceArray.fromPointer(d.pointer + BigInt(v.byteOffset), dtype, n - 4, { device: d.device });
      check(`fromPointer ${dtype}[${n}]`, same(await shared.toHost(), expect.subarray(2, n - 2)), '');
      c.dispose();
    }
    d.dispose();
  }
}

// ---- one-rank NCCL communicator vs the CPU engine ----
const comm = await init({ rank: 0, worldSize: 1, backend: 'nccl' });
const runBoth = async (name, dtype, n, f) => {
  // f(kind, x, y) runs the op with host arrays (kind 'host') or device arrays (kind 'device').
  const hx = hostValues(dtype, n, 2);
  const hy = hostValues(dtype, n, 3);
  const dx = await DeviceArray.fromHost(hx, hostOpt(dtype));
  const dy = await DeviceArray.fromHost(hy, hostOpt(dtype));
  try {
    await f('host', hx, hy);
    await f('device', dx, dy);
    const [rx, ry] = [await dx.toHost(), await dy.toHost()];
    check(`${name} ${dtype}[${n}]`, same(rx, hx) && same(ry, hy), `x: ${diff(hx, rx)}; y: ${diff(hy, ry)}`);
  } catch (e) {
    check(`${name} ${dtype}[${n}]`, false, `${e.name}: ${e.message}`);
  } finally {
    dx.dispose();
    dy.dispose();
  }
};
for (const dtype of DTYPES) {
  const o = hostOpt(dtype);
  for (const n of SIZES) {
    for (const op of OPS) {
      await runBoth(`allReduce in place ${op}`, dtype, n, (k, x) => comm.allReduce(x, { op, ...(k === 'host' ? o : {}) }));
      await runBoth(`allReduce out of place ${op}`, dtype, n, (k, x, y) => comm.allReduce(x, { op, out: y, ...(k === 'host' ? o : {}) }));
      await runBoth(`reduceScatter ${op}`, dtype, n, (k, x, y) => comm.reduceScatter(x, y, { op, ...(k === 'host' ? o : {}) }));
      await runBoth(`reduce ${op}`, dtype, n, (k, x, y) => comm.reduce(x, { op, root: 0, out: y, ...(k === 'host' ? o : {}) }));
    }
    await runBoth('allGather', dtype, n, (k, x, y) => comm.allGather(x, y, k === 'host' ? o : {}));
    await runBoth('broadcast in place', dtype, n, (k, x) => comm.broadcast(x, { root: 0, ...(k === 'host' ? o : {}) }));
    await runBoth('broadcast out of place', dtype, n, (k, x, y) => comm.broadcast(x, { root: 0, out: y, ...(k === 'host' ? o : {}) }));
    await runBoth('sendRecv to self', dtype, n, (k, x, y) => comm.sendRecv({ send: x, to: 0, ...(k === 'host' ? o : {}) }, { recv: y, from: 0, ...(k === 'host' ? o : {}) }));
  }
}
// split of a communicator whose NCCL side is in use: ncclCommSplit (color 0 -> a one-rank child; -1 -> none)
try {
  const sub = await comm.split(0, 0, { ncclAlgorithm: 'ring' });
  const x = await DeviceArray.fromHost(new Float32Array([1, 2, 3]));
  await sub.allReduce(x, { op: 'max' });
  check('split (ncclCommSplit) child allReduce', same(await x.toHost(), new Float32Array([1, 2, 3])), '');
  await sub.destroy();
  check('split color -1 gives null', (await comm.split(-1)) === null, '');
  await comm.allReduce(x);
  check('parent allReduce after splits', same(await x.toHost(), new Float32Array([1, 2, 3])), '');
} catch (e) {
  check('split (ncclCommSplit)', false, `${e.name}: ${e.message}`);
}
await comm.barrier();
await comm.destroy();

console.log(JSON.stringify({ ok: failures.length === 0, checks, failures: failures.slice(0, 50), failureCount: failures.length, gpu }));
process.exit(failures.length ? 1 : 0);
