#!/bin/sh
# edgesink postrm: purge removes the state directory, undelivered alerts
# included. The system user stays (files elsewhere may still carry its id).
set -e
if [ "$1" = purge ]; then
	rm -rf "${DPKG_ROOT:-}/var/lib/edgesink"
fi
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
