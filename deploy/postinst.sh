#!/bin/sh
# edgesink postinst: the system user, the state directory, the config's
# group, and the service enabled and (re)started. Honours DPKG_ROOT, so the
# package also installs into a directory tree (dpkg --root, image builds).
set -e

root="${DPKG_ROOT:-}"

# lookup DB NAME: the numeric id of NAME in the tree's passwd or group file
# (names would resolve against the running system, not the tree).
lookup() {
	awk -F: -v n="$2" '$1 == n { print $3; exit }' "$root/etc/$1"
}

if [ "$1" = configure ]; then
	if command -v systemd-sysusers >/dev/null 2>&1; then
		systemd-sysusers ${root:+--root="$root"} edgesink.conf
	elif [ -z "$(lookup passwd edgesink)" ]; then
		adduser --system --group --home /var/lib/edgesink --no-create-home edgesink
		adduser edgesink dialout
	fi
	uid="$(lookup passwd edgesink)"
	gid="$(lookup group edgesink)"
	install -d -m 0750 -o "$uid" -g "$gid" "$root/var/lib/edgesink"
	# The config may hold the MQTT password: readable by the service only.
	chgrp "$gid" "$root/etc/edgesink/edgesink.yaml"
	chmod 0640 "$root/etc/edgesink/edgesink.yaml"

	systemctl ${root:+--root="$root"} enable edgesink.service >/dev/null 2>&1 ||
		systemctl ${root:+--root="$root"} enable edgesink.service
	if [ -z "$root" ] && [ -d /run/systemd/system ]; then
		systemctl daemon-reload
		systemctl restart edgesink.service || {
			echo "edgesink did not start: see 'journalctl -u edgesink' and 'edgesink check-config --config /etc/edgesink/edgesink.yaml'" >&2
		}
	fi
fi
exit 0
