#!/usr/bin/env bash
# Installs what the JS/browser tests need; idempotent, safe to run before every `make test`.
#   - Node >= 18 and Debian's chromium (apt), only when missing;
#   - playwright-core (npm, pinned) into .cache/node/node_modules. It never downloads a browser:
#     the tests drive /usr/bin/chromium through executablePath.
set -euo pipefail
cd "$(dirname "$0")/.."
PLAYWRIGHT_CORE_VERSION=1.65.1
export DEBIAN_FRONTEND=noninteractive PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 18 ]; then
  need_apt+=(nodejs)
fi
command -v npm >/dev/null || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  $SUDO apt-get install -y "${need_apt[@]}"
fi

dest=.cache/node
have=$(node -p "try{require('./$dest/node_modules/playwright-core/package.json').version}catch{''}" 2>/dev/null || true)
if [ "$have" != "$PLAYWRIGHT_CORE_VERSION" ]; then
  mkdir -p "$dest"
  npm install --no-save --no-package-lock --no-audit --no-fund --prefix "$dest" \
    "playwright-core@$PLAYWRIGHT_CORE_VERSION"
fi
echo "browser test set-up ok: $(/usr/bin/chromium --version), node $(node --version), playwright-core $PLAYWRIGHT_CORE_VERSION"
