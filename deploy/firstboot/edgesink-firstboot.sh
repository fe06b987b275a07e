#!/bin/sh
# edgesink-firstboot.sh: installs edgesink on the first boot of a freshly
# flashed Raspberry Pi OS card. Copy to the card's boot partition (FAT,
# readable from any PC):
#   edgesink/edgesink-firstboot.sh   this script
#   edgesink/edgesink_*_armhf.deb    and/or _arm64.deb, from 'make deb'
#   edgesink/edgesink.yaml           optional: your config
# and have it run once as root at first boot, either
#   - cloud-init (Raspberry Pi OS from trixie on, Imager customisation):
#     in user-data,  runcmd: [ [ sh, /boot/firmware/edgesink/edgesink-firstboot.sh ] ]
#   - or, on bookworm, from the Imager's firstrun.sh: add before its last
#     lines:  sh /boot/firmware/edgesink/edgesink-firstboot.sh
# It installs the package for this machine's architecture, puts the config
# in place, starts the service and logs to /var/log/edgesink-firstboot.log.
# Safe to run again: a second run finds edgesink installed and stops.
# BOOT and DPKG_ROOT may point elsewhere (the tests do).
set -eu

boot=${BOOT:-/boot/firmware}
[ -d "$boot/edgesink" ] || boot=/boot
src="$boot/edgesink"
root=${DPKG_ROOT:-}
log="$root/var/log/edgesink-firstboot.log"
mkdir -p "$(dirname "$log")"
exec >>"$log" 2>&1
echo "$(date -u +%FT%TZ) edgesink first boot from $src"

if [ -x "$root/usr/bin/edgesink" ]; then
	echo "already installed; nothing to do"
	exit 0
fi
arch=$(dpkg --print-architecture)
deb=$(ls "$src"/edgesink_*_"$arch".deb 2>/dev/null | tail -1)
if [ -z "$deb" ]; then
	echo "no edgesink package for $arch in $src"
	exit 1
fi
# shellcheck disable=SC2086 # DPKG_OPTS: extra dpkg options, word-split on purpose
dpkg ${root:+--root="$root" --force-script-chrootless} ${DPKG_OPTS:-} --force-confold -i "$deb"
if [ -f "$src/edgesink.yaml" ]; then
	install -m 0640 "$src/edgesink.yaml" "$root/etc/edgesink/edgesink.yaml"
	gid=$(awk -F: '$1 == "edgesink" { print $3 }' "$root/etc/group")
	chgrp "$gid" "$root/etc/edgesink/edgesink.yaml"
	if [ -z "$root" ] && [ -d /run/systemd/system ]; then
		systemctl restart edgesink.service || true
	fi
fi
echo "edgesink installed: $deb"
