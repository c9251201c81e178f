#!/bin/sh
# The Debian packages Blink's tests use: a Samba AD DC to test Active Directory
# against, and Chromium for the browser tests. Installs what is missing when run
# as root; otherwise says exactly what to install.
set -eu

PACKAGES="samba samba-ad-dc chromium"

missing=""
for package in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing="$missing $package"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian packages for the tests:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >/dev/null
    exit 0
fi

echo "The integration and browser tests need these Debian packages:$missing"
echo "Install them with:  sudo apt-get install$missing"
exit 1
