#!/usr/bin/env bash
# image.sh BASE OUT BINARY CONFIG: write a copy of a Raspberry Pi OS image
# (BASE: .img or .img.xz as downloaded) to OUT with edgesink in its root
# file system: the binary, CONFIG as /etc/edgesink/edgesink.yaml, the
# systemd unit enabled, and the edgesink user. Flash OUT as usual; edgesink
# runs from the first boot. Called by 'make image'.
#
# Needs no root and no loop devices: sfdisk reads the partition table and
# debugfs (e2fsprogs) writes into the ext4 root partition inside the file.
set -euo pipefail

die() { echo "image: $*" >&2; exit 1; }
[ $# -eq 4 ] || die "usage: image.sh BASE OUT BINARY CONFIG"
base=$1 out=$2 binary=$3 config=$4
here=$(cd "$(dirname "$0")" && pwd)
for tool in sfdisk debugfs systemd-sysusers; do
	command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] ||
		die "needs $tool (Debian: apt-get install fdisk e2fsprogs systemd)"
done
export PATH="$PATH:/usr/sbin:/sbin"
for f in "$base" "$binary" "$config"; do [ -f "$f" ] || die "$f: no such file"; done

mkdir -p "$(dirname "$out")"
echo "image: copying $base to $out"
case "$base" in
*.xz) xz -dc "$base" >"$out.part" ;;
*) cp "$base" "$out.part" ;;
esac

# Raspberry Pi OS: partition 1 FAT (boot), partition 2 ext4 (root). Take
# the first Linux partition.
start=$(sfdisk -d "$out.part" | awk -F'[=,]' '/type= *83/ { gsub(/ /, "", $2); print $2; exit }')
sector=$(sfdisk -d "$out.part" | awk '/^sector-size:/ { print $2 }')
[ -n "$start" ] || die "$base: no Linux (type 83) partition; is it a Raspberry Pi OS image?"
root="$out.part?offset=$((start * ${sector:-512}))"
debugfs -R "stat /etc/os-release" "$root" >/dev/null 2>&1 || die "$base: partition at sector $start holds no root file system"

work=$(mktemp -d)
trap 'rm -rf "$work" "$out.part.cmds"' EXIT

# The edgesink user: systemd-sysusers run on copies of the image's user
# database, which are written back.
mkdir -p "$work/etc"
for db in passwd group shadow gshadow; do
	debugfs -R "dump /etc/$db $work/etc/$db" "$root" 2>/dev/null
	[ -s "$work/etc/$db" ] || die "image has no /etc/$db"
done
systemd-sysusers --root="$work" "$here/sysusers.conf" >/dev/null
gid=$(awk -F: '$1 == "edgesink" { print $3 }' "$work/etc/group")
[ -n "$gid" ] || die "could not create the edgesink user"

unit=/usr/lib/systemd/system/edgesink.service
{
	for db in passwd group shadow gshadow; do
		mode=$([ "${db#*shadow}" != "$db" ] && echo 0100640 || echo 0100644)
		echo "rm /etc/$db"
		echo "write $work/etc/$db /etc/$db"
		echo "sif /etc/$db mode $mode"
		[ "$mode" = 0100640 ] && echo "sif /etc/$db gid $(awk -F: '$1 == "shadow" { print $3 }' "$work/etc/group")"
	done
	echo "rm /usr/bin/edgesink"
	echo "write $binary /usr/bin/edgesink"
	echo "sif /usr/bin/edgesink mode 0100755"
	echo "mkdir /etc/edgesink"
	echo "rm /etc/edgesink/edgesink.yaml"
	echo "write $config /etc/edgesink/edgesink.yaml"
	echo "sif /etc/edgesink/edgesink.yaml mode 0100640"
	echo "sif /etc/edgesink/edgesink.yaml gid $gid"
	echo "rm $unit"
	echo "write $here/edgesink.service $unit"
	echo "sif $unit mode 0100644"
	echo "mkdir /usr/lib/sysusers.d"
	echo "rm /usr/lib/sysusers.d/edgesink.conf"
	echo "write $here/sysusers.conf /usr/lib/sysusers.d/edgesink.conf"
	echo "mkdir /etc/systemd/system/multi-user.target.wants"
	echo "rm /etc/systemd/system/multi-user.target.wants/edgesink.service"
	echo "symlink /etc/systemd/system/multi-user.target.wants/edgesink.service $unit"
} >"$out.part.cmds"
# debugfs reports a failed command on stderr but exits 0; "rm" of a file
# not there yet and "mkdir" of one that is are expected, anything else not.
errs=$(debugfs -w -f "$out.part.cmds" "$root" 2>&1 >/dev/null |
	grep -v -e '^debugfs [0-9]' -e 'File not found by ext2_lookup' -e 'Ext2 directory already exists' \
		-e 'Ext2 file already exists' || true)
[ -z "$errs" ] || die "writing into the image: $errs"

# Files are written with the caller's ids; they must be root's.
for f in /etc/passwd /etc/group /usr/bin/edgesink /etc/edgesink /etc/edgesink/edgesink.yaml $unit /usr/lib/sysusers.d/edgesink.conf; do
	echo "sif $f uid 0"
done >"$out.part.cmds"
for f in /usr/bin/edgesink /etc/edgesink $unit /usr/lib/sysusers.d/edgesink.conf /etc/passwd /etc/group; do
	echo "sif $f gid 0"
done >>"$out.part.cmds"
debugfs -w -f "$out.part.cmds" "$root" >/dev/null 2>&1

mv "$out.part" "$out"
echo "image: $out is ready: edgesink installed and enabled, config from $config"
echo "image: flash it with Raspberry Pi Imager (Use custom) or: xz -T0 $out && dd / bmaptool"
