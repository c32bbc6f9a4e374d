#!/usr/bin/env bash
# Fetch wllama (llama.cpp compiled to WebAssembly, for browser mode) from the npm registry into
# jisu/web/vendor/wllama/. Its two WebAssembly builds are 10 and 19 MB: build outputs of another
# project, so they are fetched at setup by version and checked by sha256, not kept in git.
# Without npm, setup goes on and jisu serves without browser mode (the page hides the switch).
set -euo pipefail
cd "$(dirname "$0")/.."

WLLAMA_VERSION="3.13.0"   # keep in step with jisu/web/vendor/README.md
target="jisu/web/vendor/wllama"
# file in the package -> where it goes -> its sha256
files=(
  "wllama/esm/index.js                 index.js              fffd95c16ca191f31f4303664a05189c43d0cb20c52b67276c04e8857b138b64"
  "wllama/esm/wasm/wllama.wasm         wllama.wasm           79ac5be917b71d50571a4f584436a9f6baf6b6e57719d094ed8bd950e9a65780"
  "wllama-compat/wasm/wllama.js        compat/wllama.js      942062a7495790a317061b27a6bcd2bd3b247e2ddef53a069baf5abb07284758"
  "wllama-compat/wasm/wllama.wasm      compat/wllama.wasm    35df8c1e2f7dbd74b8e8b01054fb9f1fbe86cf566945fbf4cef3965855a8b92e"
)

intact() {
  for line in "${files[@]}"; do
    read -r _ name sum <<<"$line"
    [ -f "$target/$name" ] && echo "$sum  $target/$name" | sha256sum --check --status || return 1
  done
}

intact && exit 0
if ! command -v npm >/dev/null; then
  echo "jisu: npm not found: browser mode stays off (install Node.js and run scripts/setup.sh again)" >&2
  exit 0
fi
echo "Fetching wllama $WLLAMA_VERSION for browser mode ..." >&2
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && npm pack --silent "@wllama/wllama@$WLLAMA_VERSION" "@wllama/wllama-compat@$WLLAMA_VERSION" >/dev/null)
mkdir -p "$scratch/wllama" "$scratch/wllama-compat" "$scratch/out/compat"
tar xzf "$scratch/wllama-wllama-$WLLAMA_VERSION.tgz" -C "$scratch/wllama" --strip-components=1
tar xzf "$scratch/wllama-wllama-compat-$WLLAMA_VERSION.tgz" -C "$scratch/wllama-compat" --strip-components=1
for line in "${files[@]}"; do
  read -r source name sum <<<"$line"
  cp "$scratch/$source" "$scratch/out/$name"
  echo "$sum  $scratch/out/$name" | sha256sum --check --status \
    || { echo "jisu: $source of wllama $WLLAMA_VERSION does not match its sha256; not installed" >&2; exit 1; }
done
# Into place only when every file is checked: never half of one version and half of another.
rm -rf "$target.partial" && mv "$scratch/out" "$target.partial"
rm -rf "$target" && mv "$target.partial" "$target"
