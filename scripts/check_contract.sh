#!/usr/bin/env bash
# The guarded contract: `buf lint` (STANDARD, buf.yaml), then `buf breaking`
# (FILE rules) of proto/ against the previous commit, so a change that would
# break generated callers fails CI. buf is the exact version in
# clients/node/package-lock.json (installed here with `npm ci` when missing).
#
#   scripts/check_contract.sh [REPO_DIR]     (default: this repository)
#
# Compares against BUF_BREAKING_AGAINST when set (a buf input, e.g.
# '.git#ref=v1.2.0'), else '.git#ref=HEAD~1'. With no parent commit (the first
# commit, or a shallow clone of depth 1) or outside a git checkout, it says so
# and skips the breaking check (lint still runs).
# A deliberate break (like v1's string-to-enum change, made while v1 had no
# outside users): a commit of its own, the .proto comments saying what broke
# and why, and that one CI run with BUF_BREAKING_AGAINST='.git#ref=HEAD'.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
node_dir="$here/clients/node"
buf="$node_dir/node_modules/.bin/buf"
cd "${1:-$here}"

if [ ! -x "$buf" ] || [ ! "$node_dir/node_modules/.package-lock.json" -nt "$node_dir/package-lock.json" ]; then
  (cd "$node_dir" && npm ci --no-audit --no-fund >/dev/null)
fi

"$buf" lint
echo "buf lint: ok"

against="${BUF_BREAKING_AGAINST:-}"
if [ -z "$against" ] && ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "buf breaking: skipped: $(pwd) is not a git checkout"
  exit 0
fi
if [ -z "$against" ]; then
  if [ "$(git rev-parse --is-shallow-repository)" = "true" ] && ! git rev-parse --verify -q HEAD~1 >/dev/null; then
    git fetch --quiet --deepen=1 2>/dev/null || true
  fi
  if ! git rev-parse --verify -q HEAD~1 >/dev/null; then
    echo "buf breaking: skipped: HEAD has no parent commit here (the first commit, or a shallow" \
         "clone: clone with --depth 2 or more, or set BUF_BREAKING_AGAINST)"
    exit 0
  fi
  against=".git#ref=HEAD~1"
fi
"$buf" breaking --against "$against"
echo "buf breaking: no breaking change against $against"
