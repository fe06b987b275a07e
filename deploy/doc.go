// Package deploy holds what puts edgesink on a board, none of it Go: the
// systemd unit (edgesink.service), the sysusers.d entry for its user, the
// package definition (nfpm.yaml, built by mkdeb) with its maintainer
// scripts, the example config, the image writer (image.sh), the over-SSH
// installer (install.sh) and the first-boot script (firstboot/). Its tests
// build every board's binary and check them where they will run: under
// qemu-user, as installed packages, inside a disk image.
package deploy
