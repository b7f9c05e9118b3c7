// Loading that degrades, never crashes: a package with no compiled addon and no
// prebuild still imports, reports the missing addon as one
// BackendUnavailableError listing every path it tried and the fixes, and exits
// normally. Each case runs in a child process over a copy of dist/ in a temp
// package folder (no build/, no prebuilds/), so the loader's module-level
// cache and the repository's own build cannot leak in.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let packageDir = '';

/** What probe.mjs prints (one JSON line). */
interface ProbeResult {
  candidates: string[];
  loadError: { name: string; code: string; message: string; remedy: string | null; isBackendUnavailable: boolean; isRingtreeError: boolean } | null;
  loadErrorAgainSame: boolean;
  available: boolean | string;
  indexExports: string[] | string;
  loadedAddons: string[];
}

// Runs inside the temp package. Catches nothing it should not: any uncaught
// error is a crash and shows up as a non-zero exit.
const probeSource = `
import * as binding from './dist/binding.js';
import { BackendUnavailableError, RingtreeError } from './dist/errors.js';
const result = { candidates: binding.addonCandidates() };
const mode = process.argv[2];
if (mode === 'index') {
  const index = await import('./dist/index.js');
  result.indexExports = Object.keys(index);
} else {
  try {
    binding.loadBinding();
    result.loadError = null;
  } catch (err) {
    result.loadError = {
      name: err.name, code: err.code, message: err.message, remedy: err.remedy ?? null,
      isBackendUnavailable: err instanceof BackendUnavailableError, isRingtreeError: err instanceof RingtreeError,
    };
    try { binding.loadBinding(); } catch (again) { result.loadErrorAgainSame = again === err; }
  }
  try { result.available = binding.bindingAvailable(); } catch (err) { result.available = 'threw: ' + err.message; }
}
result.loadedAddons = process.report.getReport().sharedObjects.filter((s) => s.endsWith('.node'));
console.log(JSON.stringify(result));
`;

function probe(mode: 'load' | 'index', env: NodeJS.ProcessEnv = {}): { status: number | null; signal: string | null; result: ProbeResult; stderr: string } {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  if (!('RINGTREE_ADDON_PATH' in env)) delete childEnv.RINGTREE_ADDON_PATH;
  const run = spawnSync(process.execPath, ['probe.mjs', mode], { cwd: packageDir, env: childEnv, encoding: 'utf8', timeout: 30_000 });
  const lastLine = run.stdout.trim().split('\n').pop() ?? '';
  let result: ProbeResult;
  try {
    result = JSON.parse(lastLine) as ProbeResult;
  } catch {
    throw new Error(`probe printed no result (status ${run.status}, signal ${run.signal})\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  }
  return { status: run.status, signal: run.signal, result, stderr: run.stderr };
}

beforeAll(() => {
  // dist/ must reflect lib/ (tsc still emits when others' files have type errors).
  spawnSync(process.execPath, [path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
    cwd: repoRoot, stdio: 'ignore', timeout: 120_000,
  });
  for (const file of ['binding.js', 'errors.js', 'index.js']) {
    if (!existsSync(path.join(repoRoot, 'dist', file))) throw new Error(`tsc did not produce dist/${file}`);
  }
  packageDir = mkdtempSync(path.join(os.tmpdir(), 'ringtree-nobuild-'));
  cpSync(path.join(repoRoot, 'dist'), path.join(packageDir, 'dist'), { recursive: true });
  cpSync(path.join(repoRoot, 'package.json'), path.join(packageDir, 'package.json'));
  symlinkSync(path.join(repoRoot, 'node_modules'), path.join(packageDir, 'node_modules'), 'dir');
  writeFileSync(path.join(packageDir, 'probe.mjs'), probeSource);
}, 150_000);

afterAll(() => {
  if (packageDir) rmSync(packageDir, { recursive: true, force: true });
});

describe('a package with no build/ and no prebuilds/', () => {
  it('loadBinding() throws one BackendUnavailableError listing every path tried and the fixes; the process exits 0', () => {
    const { status, signal, result, stderr } = probe('load');
    expect({ status, signal, stderr }).toEqual({ status: 0, signal: null, stderr: '' });

    const error = result.loadError;
    expect(error).not.toBeNull();
    expect(error!.name).toBe('BackendUnavailableError');
    expect(error!.code).toBe('ERR_RINGTREE_BACKEND_UNAVAILABLE');
    expect(error!.isBackendUnavailable).toBe(true);
    expect(error!.isRingtreeError).toBe(true);

    // Every candidate file, each with why it failed, and the node-gyp-build
    // search (which covers prebuilds/) against the package folder.
    expect(result.candidates.length).toBeGreaterThanOrEqual(3);
    for (const candidate of result.candidates) {
      expect(candidate.startsWith(packageDir)).toBe(true);
      expect(error!.message).toContain(`${candidate}: not found`);
    }
    expect(error!.message).toContain(`node-gyp-build(${packageDir})`);

    // The fixes a user can act on.
    expect(error!.message).toContain('Possible solutions');
    expect(error!.remedy).toMatch(/npm rebuild ringtree/);
    expect(error!.remedy).toMatch(/RINGTREE_ADDON_PATH/);
    expect(error!.remedy).toMatch(/glibc/i);

    // The failure is remembered, not retried on every call.
    expect(result.loadErrorAgainSame).toBe(true);
    expect(result.loadedAddons).toEqual([]);
  });

  it('bindingAvailable() returns false without throwing', () => {
    const { status, result } = probe('load');
    expect(status).toBe(0);
    expect(result.available).toBe(false);
  });

  it('lists RINGTREE_ADDON_PATH first, with the loader error when the file is not an addon', () => {
    const bogus = path.join(packageDir, 'not-an-addon.node');
    writeFileSync(bogus, 'this is not an ELF shared object\n');
    const { status, signal, result } = probe('load', { RINGTREE_ADDON_PATH: bogus });
    expect({ status, signal }).toEqual({ status: 0, signal: null });
    expect(result.candidates[0]).toBe(bogus);
    const message = result.loadError!.message;
    const line = message.split('\n').find((l) => l.includes(`${bogus}:`));
    expect(line, message).toBeDefined();
    expect(line).not.toMatch(/not found$/);
    expect(line).toMatch(/invalid ELF header|file too short|not a ringtree addon/);
    // The regular candidates are still tried and listed after it.
    for (const candidate of result.candidates.slice(1)) expect(message).toContain(`${candidate}: not found`);
    expect(result.available).toBe(false);
  });

  it('lists a RINGTREE_ADDON_PATH that does not exist as not found', () => {
    const missing = path.join(packageDir, 'missing', 'ringtree.node');
    const { status, result } = probe('load', { RINGTREE_ADDON_PATH: missing });
    expect(status).toBe(0);
    expect(result.loadError!.message).toContain(`${missing}: not found`);
  });

  it('imports the package entry (dist/index.js) without loading the addon', () => {
    const { status, signal, result, stderr } = probe('index');
    expect({ status, signal, stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    expect(result.indexExports).toContain('BackendUnavailableError');
    expect(result.loadedAddons).toEqual([]);
  });
});

describe('the repository package, where the addon is built', () => {
  it('importing dist/index.js does not load the addon eagerly', () => {
    const run = spawnSync(
      process.execPath,
      ['--input-type=module', '-e',
        "await import('./dist/index.js'); console.log(JSON.stringify(process.report.getReport().sharedObjects.filter((s) => s.endsWith('.node'))))"],
      { cwd: repoRoot, encoding: 'utf8', timeout: 30_000 },
    );
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout.trim().split('\n').pop() ?? 'null')).toEqual([]);
  });
});
