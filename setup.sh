#!/usr/bin/env bash
# dkfac set-up: the one command of the README's quick start.
#  - Debian packages, installed with apt-get when running as root (otherwise a note says what is missing):
#      g++, make, python3      the C++ toolchain node-gyp builds the native engine with
#      libdnnl-dev             oneDNN: convolutions and products of the native engine
#      libopenblas-dev         OpenBLAS with LAPACK: K-FAC's inverses and eigendecompositions
#      chromium                the headless-browser checks of the report page and the demo
#      dataset-fashion-mnist   the full 60,000 + 10,000 Fashion-MNIST the quick profiles train on (without it they use
#                              the embedded 12,000 + 2,000 subset)
#      redis-server, openssl   the Redis transport: its tests start their own redis-server on a free loopback port
#                              (never the system service, which is not started here) and make a throw-away TLS
#                              certificate
#  - Node packages from the lockfile (npm ci), which also builds the native addon (native/build.mjs): where it cannot
#    be built, npm ci still succeeds and runs use the wasm engine, saying why. The optional GPU/native tfjs backends
#    (@tensorflow/tfjs-node[-gpu], webgpu) install where their downloads are reachable and are skipped where not.
#  - npm ci also runs the package's `prepare` (npm run build: dist/ for the package and its tests).
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v python3 >/dev/null 2>&1 || need+=(python3)
[ -f /usr/include/oneapi/dnnl/dnnl.hpp ] || need+=(libdnnl-dev)
[ -e /usr/lib/x86_64-linux-gnu/libopenblas.so ] || need+=(libopenblas-dev)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${need[*]}"
    apt-get update -qq
    # RUNLEVEL=1: packages' own services (redis-server's) are not started
    RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "setup: note: missing ${need[*]} and not root (or no apt-get): the native engine falls back to wasm; the headless-browser and Redis tests are skipped"
  fi
fi

npm ci --no-audit --no-fund
node --import tsx -e "import('./src/backend/index.ts').then(async (b) => { const i = await b.initBackend(); console.log('setup: engine for runs: ' + i.name + ' (' + i.version + ')'); b.releaseBackend(); })"
echo "setup: done. Next: npm run exp:fig6   (and npm test)"
