#!/usr/bin/env bash
# dkfac set-up: the one command of the README's quick start.
#  - Node packages from the lockfile (npm ci). The optional GPU/native backends (@tensorflow/tfjs-node[-gpu], webgpu)
#    install where their downloads are reachable and are silently skipped where they are not.
#  - Debian's Chromium, used only to check that reports/index.html renders in a real headless browser
#    (installed with apt-get when running as root and it is missing; otherwise a note is printed).
#  - Debian's redis-server (Redis 7) and openssl: the Redis transport's tests start their own redis-server on a free
#    loopback port (never the system service) and make a throw-away TLS certificate; installed with apt-get when
#    running as root and missing. The package's own service is not needed and not started by this script.
set -euo pipefail
cd "$(dirname "$0")"

apt_updated=0
apt_install() {
  if [ "$apt_updated" = "0" ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium (headless report check)"
    apt_install chromium
  else
    echo "setup: note: chromium not found and not root; the headless-browser report test will be skipped outside CI"
  fi
fi

if ! command -v redis-server >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's redis-server and openssl (the Redis transport and its tests)"
    # RUNLEVEL=1: the package's own service is not started (the tests start their own servers)
    RUNLEVEL=1 apt_install redis-server openssl
  else
    echo "setup: note: redis-server or openssl not found and not root; the Redis transport's tests will be skipped"
  fi
fi

npm ci --no-audit --no-fund
echo "setup: done. Next: npm run exp:fig6   (and npm test)"
