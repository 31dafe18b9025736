#!/usr/bin/env bash
# Installs what vireo needs on Debian 12: the build toolchain and libraries from Debian's
# packages, and the reference engine (llama.cpp via node-llama-cpp) from npm for the tests.
# Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libfmt-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libpoppler-cpp-dev libtesseract-dev libleptonica-dev tesseract-ocr-eng libxml2-dev libzip-dev
  libuchardet-dev libcmark-gfm-dev libcmark-gfm-extensions-dev libmagic-dev libutf8proc-dev
  libsqlite3-dev libhnswlib-dev libssl-dev
  clang libclang-rt-dev
  chromium
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The reference engines for tests. Needs Node.js 20 or newer; without it those tests skip.
if [ "${VIREO_SKIP_NPM:-0}" != "1" ]; then
  if command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; then
    # Reinstall when the lock file changed since the last install.
    stamp=tests/reference/node_modules/.vireo-lock-sha
    want=$(sha256sum tests/reference/package-lock.json | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
      echo "installing the reference engines (llama.cpp via node-llama-cpp, @huggingface/jinja, @lenml/tokenizers) for the tests"
      if (cd tests/reference && npm install --omit=optional --no-audit --no-fund --loglevel=error); then
        echo "$want" > "$stamp"
      else
        echo "warning: npm install failed; tests against the reference engines will be skipped"
      fi
    fi
  else
    echo "note: Node.js >= 20 not found; tests against llama.cpp will be skipped"
  fi
fi
