#!/usr/bin/env bash
# Install Debian's Chromium for the end-to-end browser tests (playwright cannot download browsers offline).
# Skips quietly when chromium is present or when apt is unavailable/not root (the browser test then skips).
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
    || echo "warning: chromium could not be installed; browser tests will be skipped"
else
  echo "note: no root/apt; install chromium yourself to run the browser tests"
fi
exit 0
