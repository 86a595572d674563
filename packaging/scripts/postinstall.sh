#!/bin/sh
# scaledownd postinstall (deb postinst, rpm %post).
#   deb: $1 = configure, $2 = the previously configured version (empty on a
#        first install)
#   rpm: $1 = 1 on a first install, 2 or more on an upgrade
#
# First install: enable the unit and start it. Without a queue configured
# the daemon idles safely (one warning, healthy), so starting it at once is
# harmless; on an AMI bake set SCALEDOWND_NO_START=1 (packer-provisioner.sh
# does) to only enable it. Upgrade: restart a running daemon; it leaves an
# action in progress and picks it up again at once.
#
# Works with and without systemd as PID 1 (containers, chroots, image
# builders): enabling only creates symlinks; reloads and starts need a
# running systemd.
set -e

first_install=no
case "$1" in
  configure) if [ -z "${2:-}" ]; then first_install=yes; fi ;;
  1) first_install=yes ;;
  abort-upgrade|abort-remove|abort-deconfigure) exit 0 ;;
esac

systemd_running() { [ -d /run/systemd/system ]; }

if systemd_running; then
  systemctl daemon-reload || true
fi

if [ "$first_install" = yes ] && command -v systemctl >/dev/null 2>&1; then
  # Works offline too: it only creates the multi-user.target.wants link.
  systemctl enable scaledownd.service >/dev/null 2>&1 || true
fi

if systemd_running; then
  if [ "$first_install" = yes ]; then
    if [ "${SCALEDOWND_NO_START:-0}" != 1 ]; then
      # deb-systemd-invoke honours policy-rc.d (image builders deny starts).
      if command -v deb-systemd-invoke >/dev/null 2>&1; then
        deb-systemd-invoke start scaledownd.service || true
      else
        systemctl start scaledownd.service || true
      fi
    fi
  else
    if command -v deb-systemd-invoke >/dev/null 2>&1; then
      deb-systemd-invoke try-restart scaledownd.service || true
    else
      systemctl try-restart scaledownd.service || true
    fi
  fi
fi
exit 0
