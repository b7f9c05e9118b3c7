#!/usr/bin/env bash
# Pack the package as npm would publish it, install the tarball into a fresh
# ES-module project and a fresh CommonJS project, and run a smoke test in each
# (fixtures in test/packaging/). The install uses the prebuilt binary in
# prebuilds/ (run `npm run prebuild` first); without one, the tarball's
# install script compiles the addon from source (needs python3, make, g++).
# Network: only the npm registry (the tarball's two dependencies), and
# --prefer-offline takes them from the npm cache when `npm ci` already did.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

work=$(mktemp -d "${TMPDIR:-/tmp}/ringtree-pack-smoke.XXXXXX")
cleanup() { if [[ ${KEEP_SMOKE_DIR:-} == 1 ]]; then echo "pack-smoke: kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

expect_prebuild=0
if compgen -G "prebuilds/linux-$(node -p process.arch)/*.node" >/dev/null; then
  expect_prebuild=1
else
  echo "pack-smoke: WARNING: no prebuilds/ for this platform; the installs will compile the addon from source"
fi

echo "pack-smoke: npm pack"
npm pack --pack-destination "$work" >"$work/pack.log" 2>&1 || { cat "$work/pack.log"; exit 1; }
tgz=$(ls "$work"/ringtree-*.tgz)
echo "pack-smoke: $(basename "$tgz"): $(du -h "$tgz" | cut -f1), $(tar tzf "$tgz" | wc -l) files"

# What must and must not ship.
listing=$(tar tzf "$tgz")
required=(package/package.json package/dist/index.js package/dist/index.d.ts package/dist/binding.js
  package/binding.gyp package/CMakeLists.txt package/native/sources.json package/native/compat/glibcFloor.wrap package/scripts/build-kernels.sh)
[[ $expect_prebuild == 1 ]] && required+=("package/prebuilds/linux-$(node -p process.arch)/ringtree.glibc.node")
for f in "${required[@]}"; do
  grep -qx "$f" <<<"$listing" || { echo "pack-smoke: FAIL: $f missing from the tarball" >&2; exit 1; }
done
if grep -E '^package/(build|build-cmake|node_modules|test|bench|\.ci)/' <<<"$listing" | head -5 | grep -q .; then
  echo "pack-smoke: FAIL: the tarball ships build output, tests or CI files:" >&2
  grep -E '^package/(build|build-cmake|node_modules|test|bench|\.ci)/' <<<"$listing" | head -10 >&2
  exit 1
fi

install_into() {
  local kind=$1 dir=$work/$1
  cp -R "$root/test/packaging/$kind" "$dir"
  echo "pack-smoke: [$kind] npm install $(basename "$tgz")"
  (cd "$dir" && npm install --no-audit --no-fund --prefer-offline --loglevel=error "$tgz" >"$dir/install.log" 2>&1) \
    || { cat "$dir/install.log"; echo "pack-smoke: FAIL: [$kind] install" >&2; exit 1; }
  local installed=$dir/node_modules/ringtree
  if [[ -f $installed/build/Release/ringtree.node ]]; then
    echo "pack-smoke: [$kind] the install compiled the addon from source"
    if [[ $expect_prebuild == 1 ]]; then
      echo "pack-smoke: FAIL: [$kind] a prebuild was shipped but not used" >&2; cat "$dir/install.log"; exit 1
    fi
  else
    echo "pack-smoke: [$kind] the install used the shipped prebuild (no compiler run)"
  fi
}

install_into esm
install_into cjs

echo "pack-smoke: [esm] node smoke.mjs"
(cd "$work/esm" && node smoke.mjs)
echo "pack-smoke: [cjs] node smoke.cjs"
(cd "$work/cjs" && node smoke.cjs)

if [[ -f $work/esm/node_modules/ringtree/dist/cli.js ]]; then
  echo "pack-smoke: [esm] npx ringtree --help"
  (cd "$work/esm" && npx --no-install ringtree --help >"$work/cli-help.txt") \
    || { cat "$work/cli-help.txt"; echo "pack-smoke: FAIL: npx ringtree --help" >&2; exit 1; }
  head -n 3 "$work/cli-help.txt" | sed 's/^/    /'
else
  echo "pack-smoke: SKIP: npx ringtree --help (dist/cli.js is not in the package yet)"
fi
echo "pack-smoke: ok"
