#!/usr/bin/env bash
# Run the demo: the chat + notifications web page and its server, on http://127.0.0.1:3000/.
#
# The page needs one JavaScript package, the stock @rails/actioncable consumer; the server
# serves its ES module straight from js-client/node_modules. On a fresh machine this script
# installs it first (`npm ci` in js-client), then builds and starts example-demo.
# The demo's settings are environment variables (PORT, BIND, DEMO_DATABASE, ...): see
# examples/demo/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh

consumer=js-client/node_modules/@rails/actioncable/app/assets/javascripts/actioncable.esm.js
if [[ ! -f $consumer ]]; then
  if ! command -v npm >/dev/null; then
    echo "scripts/demo.sh: npm is needed to install the page's @rails/actioncable consumer" >&2
    echo "  (Node.js >= 20 with npm, e.g. sudo apt-get install nodejs npm)" >&2
    exit 1
  fi
  step "installing the page's JavaScript dependencies (npm ci in js-client)"
  (cd js-client && npm ci --no-audit --no-fund)
fi

step "starting example-demo: open http://${BIND:-127.0.0.1}:${PORT:-3000}/ in a browser once it is listening (Ctrl-C stops it)"
exec cargo run -p example-demo
