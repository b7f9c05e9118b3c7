// Smoke test of the installed tarball from an ES module project
// (scripts/pack-smoke.sh copies this folder and installs ringtree into it).
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { InvalidArgumentError, RingtreeError } from 'ringtree';
import * as ringtree from 'ringtree';

const error = new InvalidArgumentError('expected a Float32Array for `out`');
assert.ok(error instanceof InvalidArgumentError, 'instanceof InvalidArgumentError');
assert.ok(error instanceof RingtreeError, 'instanceof RingtreeError');
assert.ok(error instanceof Error, 'instanceof Error');
assert.equal(error.code, 'ERR_RINGTREE_INVALID_ARGUMENT');
assert.equal(error.name, 'InvalidArgumentError');

// The addon, through the package's own loader (dist/binding.js is internal,
// so import it by file URL; the exports map does not list it).
const require = createRequire(import.meta.url);
const packageDir = path.dirname(require.resolve('ringtree/package.json'));
const binding = await import(pathToFileURL(path.join(packageDir, 'dist', 'binding.js')).href);
const native = binding.loadBinding();
const build = native.buildInfo();
assert.equal(typeof build.buildSystem, 'string');

let infoLine = '(no info() export yet)';
if (typeof ringtree.info === 'function') {
  const report = await ringtree.info();
  assert.equal(report.addon?.loaded, true, 'info().addon.loaded');
  infoLine = `info(): addon ${report.addon.path}`;
}
console.log(`esm smoke ok: ${Object.keys(ringtree).length} exports; addon built by ${build.buildSystem} (${build.compiler}); ${infoLine}`);
