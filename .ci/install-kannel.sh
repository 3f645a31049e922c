#!/usr/bin/env bash
# Install Debian's Kannel for the SMS gateway tests, without leaving its system service running.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

if command -v bearerbox >/dev/null 2>&1 && command -v smsbox >/dev/null 2>&1; then
    echo "kannel already installed: $(command -v bearerbox)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# Debian's postinst would start bearerbox through invoke-rc.d; a policy-rc.d answering 101
# ("action forbidden") keeps it stopped. An existing policy is kept and restored afterwards.
POLICY=/usr/sbin/policy-rc.d
BACKUP=""
if [ -e "$POLICY" ]; then
    BACKUP="$(mktemp)"
    $SUDO cp -p "$POLICY" "$BACKUP"
fi
restore_policy() {
    if [ -n "$BACKUP" ]; then
        $SUDO mv -f "$BACKUP" "$POLICY"
    else
        $SUDO rm -f "$POLICY"
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
$SUDO chmod 755 "$POLICY"

$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends kannel >/dev/null

# Belt and braces: on machines whose init ignores policy-rc.d, stop and disable the service.
if [ -x /etc/init.d/kannel ]; then
    $SUDO /etc/init.d/kannel stop >/dev/null 2>&1 || true
fi
if command -v update-rc.d >/dev/null 2>&1; then
    $SUDO update-rc.d kannel disable >/dev/null 2>&1 || true
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now kannel >/dev/null 2>&1 || true
fi

echo "kannel installed: $(command -v bearerbox) ($(dpkg-query -W -f='${Version}' kannel))"
