// The embedded CUDA kernels (native/cuda/kernels, scripts/build-kernels.sh):
// the build embeds them when nvcc is there and degrades without it; through
// the CUDA double (test/doubles/fake_cuda.c runs the same arithmetic on the
// host) every conversion matches lib/dtype.ts bit for bit and 8-byte fills
// work. The real kernels are checked on a GPU by scripts/gpu-kernels-check.mjs.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'ringtree-kernels-'));
const fakeCuda = path.join(dir, 'libfakecuda.so');
let haveCc = true;

/** The nvcc scripts/build-kernels.sh would find (same order), or null. */
function findNvcc(): string | null {
  if (process.env.CUDACXX) return existsSync(process.env.CUDACXX) ? process.env.CUDACXX : null;
  for (const home of [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda']) {
    if (home && existsSync(path.join(home, 'bin', 'nvcc'))) return path.join(home, 'bin', 'nvcc');
  }
  const which = spawnSync('sh', ['-c', 'command -v nvcc'], { encoding: 'utf8' });
  return which.status === 0 && which.stdout.trim() ? which.stdout.trim() : null;
}

beforeAll(() => {
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root });
  try {
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', fakeCuda, path.join(root, 'test/doubles/fake_cuda.c'), '-lpthread', '-ldl']);
  } catch {
    haveCc = false;
  }
}, 120_000);

function node(script: string, env: Record<string, string>): string {
  return execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
}

describe('building the kernels', () => {
  it('buildInfo().kernels says the kernels are embedded (sm_80, sm_90, compute_90) when nvcc was present at build time', () => {
    const addon = createRequire(import.meta.url)(path.join(root, 'build', 'Release', 'ringtree.node')) as { buildInfo(): { kernels?: Record<string, unknown> } };
    const kernels = addon.buildInfo().kernels;
    expect(kernels).toBeDefined();
    if (!findNvcc()) {
      expect(kernels).toMatchObject({ embedded: false });
      expect(kernels!.reason).toMatch(/nvcc/);
      return;
    }
    expect(kernels).toMatchObject({ embedded: true, architectures: 'sm_80 sm_90 compute_90', reason: '' });
    expect(kernels!.nvcc).toMatch(/^\d+\.\d+$/);
  });

  it('scripts/build-kernels.sh without nvcc writes a header with no images and the reason; RINGTREE_REQUIRE_KERNELS=1 fails instead', () => {
    const out = path.join(dir, 'none', 'kernelImages.h');
    const env = { ...process.env, CUDACXX: path.join(dir, 'no-such-nvcc'), RINGTREE_REQUIRE_KERNELS: '0' };  // .ci/run exports 1
    const run = spawnSync('bash', [path.join(root, 'scripts', 'build-kernels.sh'), out], { encoding: 'utf8', env });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/WARNING: nvcc was not found \(CUDACXX=.*no-such-nvcc is not an executable\)/);
    const header = readFileSync(out, 'utf8');
    expect(header).toMatch(/#define RINGTREE_KERNELS_EMBEDDED 0/);
    expect(header).toMatch(/kImageCount = 0/);
    const strict = spawnSync('bash', [path.join(root, 'scripts', 'build-kernels.sh'), path.join(dir, 'strict.h')], { encoding: 'utf8', env: { ...env, RINGTREE_REQUIRE_KERNELS: '1' } });
    expect(strict.status).not.toBe(0);
    expect(strict.stderr).toMatch(/FAIL \(RINGTREE_REQUIRE_KERNELS=1\)/);
  });

  it('scripts/build-kernels.sh with nvcc embeds one fatbin per .cu file', () => {
    if (!findNvcc()) return;
    const out = path.join(dir, 'with', 'kernelImages.h');
    const run = spawnSync('bash', [path.join(root, 'scripts', 'build-kernels.sh'), out], { encoding: 'utf8', timeout: 120_000 });
    expect(run.status, run.stderr).toBe(0);
    const header = readFileSync(out, 'utf8');
    expect(header).toMatch(/#define RINGTREE_KERNELS_EMBEDDED 1/);
    expect(header).toMatch(/\{"casts", castsImage, sizeof\(castsImage\)\}/);
    expect(header).toMatch(/\{"fill", fillImage, sizeof\(fillImage\)\}/);
  }, 120_000);
});

describe('kernels through the CUDA double', () => {
  it('every conversion at sizes 0, 1, 7, 1023, 65537 (NaN, infinity, subnormals, ties; scales 1, 0.5, 1/3; views; in place) and every 16-bit pattern widened match lib/dtype.ts bit for bit; float64/int64 fills', () => {
    if (!haveCc) return;
    const out = execFileSync(process.execPath, [path.join(root, 'test', 'workers', 'kernel-checks.mjs')], {
      cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, RINGTREE_CUDA_DRIVER_PATH: fakeCuda },
    });
    const r = JSON.parse(out.trim().split('\n').pop()!);
    expect(r.failures).toEqual([]);
    expect(r.checks).toBeGreaterThan(100);
  }, 120_000);

  it('launches go on the device stream in order with copies (one launch per call, none for 0 elements); the module is loaded once', () => {
    if (!haveCc) return;
    const log = path.join(dir, 'launches.log');
    const out = node(`
      import { DeviceArray } from './dist/index.js';
      const a = DeviceArray.alloc('float32', 1000); const b = DeviceArray.alloc('bfloat16', 1000);
      // Not awaited one by one: ordering comes from the arrays' tails and the one stream.
      const p = [a.copyFrom(new Float32Array(1000).fill(3)), b.convertFrom(a, { scale: 0.5 }), a.fill(0), a.convertFrom(b, { scale: 4 })];
      await Promise.all(p);
      await DeviceArray.alloc('float64', 0).fill(1);
      console.log(JSON.stringify(Array.from(await a.toHost()).slice(0, 3)));`,
    { RINGTREE_CUDA_DRIVER_PATH: fakeCuda, FAKE_CUDA_LAUNCH_LOG: log });
    expect(JSON.parse(out)).toEqual([6, 6, 6]);
    expect(readFileSync(log, 'utf8').trim().split('\n')).toEqual(['ringtree_cast_f32_bf16 1000', 'ringtree_cast_bf16_f32 1000']);
  });

  it('convertFrom validates before anything moves: unsupported pair, length, scale, overlap (InvalidArgumentError naming the argument)', () => {
    if (!haveCc) return;
    const out = node(`
      import { DeviceArray } from './dist/index.js';
      const f = DeviceArray.alloc('float32', 4), h = DeviceArray.alloc('float16', 4), i = DeviceArray.alloc('int32', 4);
      const r = {};
      for (const [k, fn] of Object.entries({
        pair: () => i.convertFrom(f), length: () => h.convertFrom(f.view(0, 3)), scale: () => h.convertFrom(f, { scale: Infinity }),
        big: () => h.convertFrom(f, { scale: 1e39 }), notDevice: () => h.convertFrom(new Float32Array(4)),
        overlap: () => f.view(0, 3).convertFrom(f.view(1, 3)),
      })) { try { await fn(); r[k] = 'resolved'; } catch (e) { r[k] = [e.name, e.message]; } }
      console.log(JSON.stringify(r));`,
    { RINGTREE_CUDA_DRIVER_PATH: fakeCuda });
    const r = JSON.parse(out);
    expect(r.pair).toEqual(['InvalidArgumentError', expect.stringMatching(/cannot convert float32 to int32; supported: float32 to bfloat16/)]);
    expect(r.length[1]).toMatch(/`src` has 3 elements but this array has 4/);
    expect(r.scale[1]).toMatch(/`scale` must be a finite float32/);
    expect(r.big[1]).toMatch(/`scale` must be a finite float32/);
    expect(r.notDevice[1]).toMatch(/`src` must be a DeviceArray/);
    expect(r.overlap[1]).toMatch(/`src` overlaps this array/);
  });

  it('without kernels (RINGTREE_DISABLE_KERNELS=1, the path of a build without nvcc) 8-byte fills and conversions reject with BackendUnavailableError; other device ops keep working', () => {
    if (!haveCc) return;
    const out = node(`
      import { DeviceArray } from './dist/index.js';
      const r = {};
      const d = DeviceArray.alloc('float64', 3);
      try { await d.fill(1); } catch (e) { r.fill = [e.name, e.message, e.remedy]; }
      const f = await DeviceArray.fromHost(new Float32Array([1, 2])); const h = DeviceArray.alloc('bfloat16', 2);
      try { await h.convertFrom(f); } catch (e) { r.convert = [e.name, e.message]; }
      await f.fill(5); r.after = Array.from(await f.toHost());
      console.log(JSON.stringify(r));`,
    { RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_DISABLE_KERNELS: '1' });
    const r = JSON.parse(out);
    expect(r.fill[0]).toBe('BackendUnavailableError');
    expect(r.fill[1]).toMatch(/ringtree_fill_u64.*RINGTREE_DISABLE_KERNELS=1/);
    expect(r.convert[0]).toBe('BackendUnavailableError');
    expect(r.after).toEqual([5, 5]);
  });
});

describe('scripts/gpu-kernels-check.mjs', () => {
  it('--dry-run explains and checks the addon; without a driver it exits 2 naming libcuda; through the doubles every step passes', () => {
    const script = path.join(root, 'scripts', 'gpu-kernels-check.mjs');
    const dry = spawnSync(process.execPath, [script, '--dry-run'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    expect(dry.status, dry.stdout + dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/dry run/);
    expect(dry.stdout).toMatch(/addon: ok - kernels embedded|addon: FAILED - no kernels/);
    const out = path.join(dir, 'gpu-out');
    const none = spawnSync(process.execPath, [script, '--out', out], {
      cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, RINGTREE_CUDA_DRIVER_PATH: path.join(dir, 'absent.so') },
    });
    if (!findNvcc()) return;
    expect(none.status, none.stdout).toBe(2);
    expect(none.stdout).toMatch(/no usable CUDA driver \(libcuda\.so\.1\)/);
    if (!haveCc) return;
    const fakeNccl = path.join(dir, 'libfakenccl.so');
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', fakeNccl, path.join(root, 'test/doubles/fake_nccl.c'), '-ldl', '-lrt']);
    const fake = spawnSync(process.execPath, [script, '--out', out, '--sizes', '0,1,7,1023'], {
      cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_NCCL_PATH: fakeNccl },
    });
    expect(fake.status, fake.stdout + fake.stderr).toBe(0);
    expect(fake.stdout).toMatch(/kernels: ok - \d+ checks/);
    expect(fake.stdout).toMatch(/ddp: ok - 6 runs of 8 steps bit-identical/);
    const json = JSON.parse(readFileSync(path.join(out, 'gpu-kernels.json'), 'utf8'));
    expect(json.ddp).toHaveLength(6);
  }, 180_000);
});
