#!/usr/bin/env bash
# Usage: scripts/check-glibc.sh FILE.node [MAX_GLIBC]
#
# Prints the highest GLIBC_x.y symbol version FILE needs and fails when it is
# above MAX_GLIBC (default 2.28, or $RINGTREE_GLIBC_MAX): a prebuilt binary must
# load on every distribution we claim (RHEL 8 / Debian 10 era and newer).
# Also fails when libstdc++/libgcc_s is a NEEDED entry or any GLIBCXX_/CXXABI_
# version is required: the addon links them statically so that the user's
# (possibly older) libstdc++ never matters.
set -euo pipefail

file=${1:?usage: check-glibc.sh FILE.node [MAX_GLIBC]}
max=${2:-${RINGTREE_GLIBC_MAX:-2.28}}
[[ -f $file ]] || { echo "check-glibc: $file: no such file" >&2; exit 2; }

fail=0

# Versions the binary requires (.gnu.version_r), e.g. GLIBC_2.14.
needed_versions=$(readelf --version-info --wide "$file" | grep -oE 'Name: (GLIBC|GLIBCXX|CXXABI)_[0-9.]+' | sed 's/^Name: //' | sort -u -V)
highest=$(grep -E '^GLIBC_' <<<"$needed_versions" | sed 's/^GLIBC_//' | sort -V | tail -n1 || true)
echo "check-glibc: $file needs GLIBC_${highest:-none} (limit $max)"

version_gt() { [[ $1 != "$2" && $(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -n1) == "$1" ]]; }

if [[ -n $highest ]] && version_gt "$highest" "$max"; then
  echo "check-glibc: FAIL: needs glibc $highest > $max; symbols above the limit:" >&2
  # Undefined dynamic symbols with their version, e.g. "(GLIBC_2.34) pthread_once".
  objdump -T "$file" | awk '/\*UND\*/ && /GLIBC_[0-9]/ { print }' | while read -r line; do
    v=$(grep -oE 'GLIBC_[0-9.]+' <<<"$line" | sed 's/^GLIBC_//')
    if version_gt "$v" "$max"; then echo "    GLIBC_$v  ${line##* }" >&2; fi
  done
  echo "check-glibc: hint: route the symbol through native/compat (see glibcFloor.wrap) or call the syscall directly." >&2
  fail=1
fi

if grep -qE '^(GLIBCXX|CXXABI)_' <<<"$needed_versions"; then
  echo "check-glibc: FAIL: requires libstdc++ symbol versions (not statically linked?):" >&2
  grep -E '^(GLIBCXX|CXXABI)_' <<<"$needed_versions" | sed 's/^/    /' >&2
  fail=1
fi

# A --wrap=SYMBOL (native/compat/glibcFloor.wrap) with no __wrap_SYMBOL
# definition links fine but fails at dlopen.
unresolved_wraps=$(objdump -T "$file" | awk '/\*UND\*/ && $NF ~ /^__wrap_/ { print $NF }')
if [[ -n $unresolved_wraps ]]; then
  echo "check-glibc: FAIL: wrapped symbols without a definition (native/compat/glibcFloor.cc):" >&2
  sed 's/^/    /' <<<"$unresolved_wraps" >&2
  fail=1
fi

needed_libs=$(readelf --dynamic --wide "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "check-glibc: NEEDED: $(tr '\n' ' ' <<<"$needed_libs")"
if grep -qE '^lib(stdc\+\+|gcc_s)\.so' <<<"$needed_libs"; then
  echo "check-glibc: FAIL: libstdc++/libgcc_s is a NEEDED entry; link with -static-libstdc++ -static-libgcc" >&2
  fail=1
fi

exit $fail
