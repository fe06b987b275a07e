#!/usr/bin/env bash
# install.sh [-c edgesink.yaml] [-n] HOST: install edgesink on a Raspberry Pi
# (or any Debian machine) over SSH. Picks the package for HOST's
# architecture from dist/ (run 'make deb' first), copies it and the config
# over, installs it with dpkg and enables the service. HOST is anything ssh
# accepts (pi@raspberrypi.local); sudo must work there.
#   -c FILE  install FILE as /etc/edgesink/edgesink.yaml (else the package's
#            commented default, or the config already on HOST, is kept)
#   -n       print what would run, change nothing
set -euo pipefail

usage() { sed -n '2,10s/^# \{0,1\}//p' "$0"; exit 2; }
config="" dry=""
while getopts c:nh opt; do
	case $opt in
	c) config=$OPTARG ;;
	n) dry=echo ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || usage
host=$1
dist=${DIST:-$(dirname "$0")/../dist}
[ -z "$config" ] || [ -f "$config" ] || { echo "install: $config: no such file" >&2; exit 1; }

arch=$(ssh "$host" dpkg --print-architecture) || { echo "install: cannot reach $host over ssh" >&2; exit 1; }
deb=$(ls -t "$dist"/edgesink_*_"$arch".deb 2>/dev/null | head -1)
[ -n "$deb" ] || { echo "install: no package for $arch in $dist: run 'make deb'" >&2; exit 1; }
echo "install: $deb -> $host ($arch)"
$dry scp -q "$deb" "$host:/tmp/edgesink.deb"
if [ -n "$config" ]; then
	$dry scp -q "$config" "$host:/tmp/edgesink.yaml"
	$dry ssh "$host" "sudo install -D -m 0640 -o root /tmp/edgesink.yaml /etc/edgesink/edgesink.yaml && rm /tmp/edgesink.yaml"
fi
# --force-confold keeps a config edited on HOST; the package's postinst
# creates the user, fixes the config's group, enables and (re)starts.
$dry ssh "$host" "sudo dpkg --force-confold -i /tmp/edgesink.deb && rm /tmp/edgesink.deb && sudo edgesink check-config --config /etc/edgesink/edgesink.yaml && systemctl is-active edgesink"
echo "install: done. Logs: ssh $host journalctl -u edgesink -f"
