#!/usr/bin/env bash
# The browser test drives Debian's Chromium (/usr/bin/chromium) with Playwright; Playwright's
# own browser download does not work on these machines. Install it if it is missing: as root
# with apt-get (CI runs as root); otherwise say so, and the browser test skips with the
# same message (as root a missing Chromium fails that test instead of skipping it).
set -uo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    echo "chromium.sh: $CHROMIUM is installed"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "chromium.sh: $CHROMIUM is missing and installing it needs root (apt-get install chromium);" \
         "the browser test will be skipped" >&2
    exit 0
fi
echo "chromium.sh: installing Debian's chromium (for the browser test)"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
if [ ! -x "$CHROMIUM" ]; then
    echo "chromium.sh: apt-get did not install $CHROMIUM" >&2
    exit 1
fi
echo "chromium.sh: $CHROMIUM is installed"
