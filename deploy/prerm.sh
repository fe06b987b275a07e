#!/bin/sh
# edgesink prerm: stop the service before its files go. Alerts not yet
# delivered stay in /var/lib/edgesink/spool for the next start.
set -e
if [ "$1" = remove ]; then
	if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
		systemctl stop edgesink.service || true
	fi
	systemctl ${DPKG_ROOT:+--root="$DPKG_ROOT"} disable edgesink.service >/dev/null 2>&1 || true
fi
exit 0
