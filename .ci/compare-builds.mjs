// Usage: node .ci/compare-builds.mjs build/Release/ringtree.node build-cmake/Release/ringtree.node
//
// The two build front doors (binding.gyp, CMakeLists.txt) must compile the
// same sources into addons with the same surface. Checks: each .node loads
// and answers buildInfo(); they export the same functions and agree on the
// build facts that do not depend on the builder; and each build folder holds
// exactly one object file per entry of native/sources.json (plus the glibc
// floor shim both add), so a source added to one front door only is caught.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const [gypNode, cmakeNode] = process.argv.slice(2).map((p) => path.resolve(p));
if (!gypNode || !cmakeNode) {
  console.error('usage: compare-builds.mjs <node-gyp .node> <cmake-js .node>');
  process.exit(2);
}

function describe(file) {
  const addon = require(file);
  assert.equal(typeof addon.buildInfo, 'function', `${file}: no buildInfo() export`);
  const info = addon.buildInfo();
  const exports = Object.keys(addon).sort();
  console.log(`${path.relative(process.cwd(), file)}: ${statSync(file).size} bytes, exports [${exports.join(', ')}]`);
  console.log(`  buildInfo: ${JSON.stringify(info)}`);
  return { info, exports };
}

const gyp = describe(gypNode);
const cmake = describe(cmakeNode);
assert.equal(gyp.info.buildSystem, 'node-gyp');
assert.equal(cmake.info.buildSystem, 'cmake-js');
assert.deepEqual(cmake.exports, gyp.exports, 'both builds export the same names');
for (const key of Object.keys(gyp.info)) {
  if (key === 'buildSystem') continue;
  assert.deepEqual(cmake.info[key], gyp.info[key], `buildInfo().${key} differs between the builds`);
}

// Object files -> source paths without extension ("native/core/reduce").
function objectSources(dir, strip) {
  const found = [];
  const walk = (d) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.o')) found.push(strip(path.relative(dir, full)));
    }
  };
  walk(dir);
  return found.sort();
}
const withoutExtension = (p) => p.replace(/\.[^./]+$/, '');
const expected = [...JSON.parse(readFileSync('native/sources.json', 'utf8')), 'native/compat/glibcFloor.cc']
  .map(withoutExtension)
  .sort();
const gypObjects = objectSources('build/Release/obj.target/ringtree', (p) => p.replace(/\.o$/, ''));
const cmakeObjects = objectSources('build-cmake/CMakeFiles/ringtree.dir', (p) => withoutExtension(p.replace(/\.o$/, '')));
assert.deepEqual(gypObjects, expected, 'node-gyp compiled exactly native/sources.json');
assert.deepEqual(cmakeObjects, expected, 'cmake-js compiled exactly native/sources.json');
console.log(`both front doors compiled the same ${expected.length} sources`);
