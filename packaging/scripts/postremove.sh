#!/bin/sh
# scaledownd postremove (deb postrm, rpm %postun).
#   deb: $1 = remove | purge | upgrade | failed-upgrade | abort-install |
#        abort-upgrade | disappear
#   rpm: $1 = 0 on erase, 1 or more on an upgrade
#
# Reload systemd after the unit file is gone. On purge, also remove the
# daemon's state (systemd's StateDirectory with DynamicUser=yes lives in
# /var/lib/private/scaledownd behind the /var/lib/scaledownd link) and any
# leftover enablement link.
set -e

case "$1" in
  remove|purge|abort-install|disappear|0)
    if [ -d /run/systemd/system ]; then
      systemctl daemon-reload || true
      systemctl reset-failed scaledownd.service >/dev/null 2>&1 || true
    fi
    ;;
esac

if [ "$1" = purge ]; then
  rm -f /etc/systemd/system/multi-user.target.wants/scaledownd.service
  rm -rf /var/lib/scaledownd /var/lib/private/scaledownd
  rmdir /etc/scaledownd 2>/dev/null || true
fi
exit 0
