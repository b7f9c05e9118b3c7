// Smoke test of the installed tarball from a CommonJS project: require() of an
// ES-module package (Node >= 20.19 / 22.12 load it without a flag as long as
// the package has no top-level await).
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');

const ringtree = require('ringtree');
const { InvalidArgumentError, RingtreeError } = ringtree;
assert.equal(typeof InvalidArgumentError, 'function', 'require("ringtree").InvalidArgumentError');

const error = new InvalidArgumentError('bad root');
assert.ok(error instanceof InvalidArgumentError);
assert.ok(error instanceof RingtreeError);
assert.ok(error instanceof Error);
assert.equal(error.code, 'ERR_RINGTREE_INVALID_ARGUMENT');

(async () => {
  // require() and import() must share one module instance, or instanceof
  // would fail across a mixed CJS/ESM application.
  const viaImport = await import('ringtree');
  assert.equal(viaImport.InvalidArgumentError, InvalidArgumentError, 'same class through require() and import()');

  // The addon loads from the installed package (prebuild or local build).
  const packageDir = path.dirname(require.resolve('ringtree/package.json'));
  const native = require('node-gyp-build')(packageDir);
  const build = native.buildInfo();
  assert.equal(typeof build.napiVersion, 'number');
  console.log(`cjs smoke ok: ${Object.keys(ringtree).length} exports; addon built by ${build.buildSystem}, N-API ${build.napiVersion}`);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
