#!/bin/sh
# The Debian packages Blink's tests use: a Samba AD DC to test Active Directory
# against, and Chromium for the browser tests. Installs what is missing when run
# as root; otherwise says exactly what to install.
set -eu

missing=""
command -v samba >/dev/null 2>&1 || missing="$missing samba samba-ad-dc"
command -v samba-tool >/dev/null 2>&1 || case "$missing" in *samba*) ;; *) missing="$missing samba-ad-dc" ;; esac
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian packages for the tests:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    exit 0
fi

echo "The integration and browser tests need these Debian packages:$missing"
echo "Install them with:  sudo apt-get install$missing"
if [ "${CI:-}" = "true" ]; then
    exit 1
fi
echo "Continuing: the tests that need them will be skipped."
