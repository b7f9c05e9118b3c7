#!/usr/bin/env bash
# Incremental node-gyp build of the addon, serialized with a lock so that
# several developers (or agents) sharing one checkout never race on build/.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>/tmp/ringtree-native-build.lock
flock 9
if [[ ! -f build/Makefile || native/sources.json -nt build/Makefile || binding.gyp -nt build/Makefile ]]; then
  npx --no-install node-gyp configure >/dev/null
fi
npx --no-install node-gyp build -j 2 2>&1 | { grep -v '^gyp info' || true; }
