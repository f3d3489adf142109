#!/usr/bin/env bash
# dkfac set-up: the one command of the README's quick start.
#  - Node packages from the lockfile (npm ci). The optional GPU/native backends (@tensorflow/tfjs-node[-gpu], webgpu)
#    install where their downloads are reachable and are silently skipped where they are not.
#  - Debian's Chromium, used to check in a real headless browser that reports/index.html renders and that the demo
#    page (demo/) trains (installed with apt-get when running as root and it is missing; otherwise a note is printed).
#  - npm ci runs the package's `prepare` (npm run build: dist/ for the package and its tests).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium (headless report check)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "setup: note: chromium not found and not root; the headless-browser report test will be skipped outside CI"
  fi
fi

npm ci --no-audit --no-fund
echo "setup: done. Next: npm run exp:fig6   (and npm test)"
