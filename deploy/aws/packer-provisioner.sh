#!/bin/sh
# Packer shell provisioner: bake scaledownd into a Trino worker AMI.
#
#   provisioner "file"  { source = "dist/scaledownd_<version>_amd64.deb"  destination = "/tmp/scaledownd.deb" }
#   provisioner "shell" { script = "deploy/aws/packer-provisioner.sh"  execute_command = "sudo sh '{{ .Path }}'" }
#
# Installs the package (.deb or .rpm, first argument or /tmp/scaledownd.deb),
# enables the unit and does NOT start it: the build instance is not in the
# worker group, and the image must not carry state from the bake. The
# configuration comes at boot from user data (deploy/aws/cloud-init.yaml).
set -eu

PKG=${1:-/tmp/scaledownd.deb}
[ -f "$PKG" ] || { echo "packer-provisioner: $PKG not found (upload the package first)" >&2; exit 1; }

# Read by the package's postinstall: enable the unit, skip the start.
SCALEDOWND_NO_START=1
export SCALEDOWND_NO_START

case "$PKG" in
  *.deb) dpkg -i "$PKG" ;;
  *.rpm) rpm -Uvh --replacepkgs "$PKG" ;;
  *) echo "packer-provisioner: $PKG is neither a .deb nor an .rpm" >&2; exit 1 ;;
esac

/usr/bin/scaledownd version
systemctl enable scaledownd.service
systemctl is-enabled scaledownd.service
# In case something started it anyway: stop it and drop its state.
systemctl stop scaledownd.service 2>/dev/null || true
rm -rf /var/lib/scaledownd /var/lib/private/scaledownd

# No secret in the image: the Trino password, if any, arrives at boot
# (deploy/aws/cloud-init.yaml) in /etc/scaledownd/trino-password, root:root
# 0600, and the unit hands it to the daemon as a systemd credential.
if [ -e /etc/scaledownd/trino-password ]; then
  echo "packer-provisioner: WARNING: /etc/scaledownd/trino-password is in the image; every instance launched from it carries the password. Remove it and provide it at boot." >&2
fi

# The worker's own unit must not restart Trino after a graceful shutdown
# (it exits 0 when drained); see deploy/systemd/trino.service.example.
for unit in /etc/systemd/system/trino.service /lib/systemd/system/trino.service /usr/lib/systemd/system/trino.service; do
  if [ -f "$unit" ] && grep -q '^Restart=always' "$unit"; then
    echo "packer-provisioner: WARNING: $unit has Restart=always; a drained worker would come back ACTIVE. Use Restart=on-failure." >&2
  fi
done
