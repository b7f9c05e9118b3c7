#!/usr/bin/env bash
# `npm run prebuild`: the prebuilt binary shipped in the npm tarball,
# prebuilds/<platform>-<arch>/ringtree.glibc.node (N-API 8, stripped).
#
# prebuildify runs `node-gyp rebuild` in its working folder, which wipes build/
# and then moves build/Release/ringtree.node away. Running it in a scratch copy
# of the native sources keeps this checkout's build/ (the tests' addon, and
# other developers' incremental builds) intact. Note that npm also runs this
# script before `npm run build` (the `pre` hook of `build`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

# node-gyp sees npm's nodedir only through the environment (npm scripts export
# it); without it node-gyp would try to download headers.
if [[ -z ${npm_config_nodedir:-} ]]; then
  nodedir=$(cd "$root" && npm config get nodedir 2>/dev/null || true)
  if [[ -n $nodedir && $nodedir != undefined && $nodedir != null ]]; then export npm_config_nodedir=$nodedir; fi
fi
export JOBS=${JOBS:-max}

scratch=$(mktemp -d "${TMPDIR:-/tmp}/ringtree-prebuild.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cp -R "$root/native" "$root/binding.gyp" "$root/package.json" "$scratch/"
# binding.gyp's action compiles the CUDA kernels with this script; the prebuilt
# binary must carry them, so a missing or failing nvcc fails the prebuild.
mkdir -p "$scratch/scripts" && cp "$root/scripts/build-kernels.sh" "$scratch/scripts/"
export RINGTREE_REQUIRE_KERNELS=${RINGTREE_REQUIRE_KERNELS:-1}
ln -s "$root/node_modules" "$scratch/node_modules"

"$root/node_modules/.bin/prebuildify" --napi --strip --tag-libc --cwd "$scratch" --out "$root" "$@"
ls -l "$root"/prebuilds/*/
