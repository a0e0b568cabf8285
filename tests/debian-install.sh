#!/usr/bin/env bash
# Installs a Debian package the tests need (tests/postgres.sh, tests/chromium.sh), as root
# only; elsewhere says what to install and fails.
#     tests/debian-install.sh PACKAGE "what it is"
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "tests: install $2 (Debian: apt-get install $1)" >&2
    exit 2
fi
# as root throughout (no `_apt` sandbox user: some images deny it /dev/null)
apt-get -o APT::Sandbox::User=root update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o APT::Sandbox::User=root install -y -qq "$1" > /dev/null
