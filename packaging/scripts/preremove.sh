#!/bin/sh
# scaledownd preremove (deb prerm, rpm %preun).
#   deb: $1 = remove | upgrade | deconfigure | failed-upgrade
#   rpm: $1 = 0 on erase, 1 or more on an upgrade
#
# On removal: stop the daemon (SIGTERM leaves an action in progress
# uncompleted; Auto Scaling then waits out HeartbeatTimeout) and disable
# the unit. On upgrade nothing happens here: postinstall restarts it.
set -e

case "$1" in
  remove|deconfigure|0) ;;
  *) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
  systemctl stop scaledownd.service || true
fi
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable scaledownd.service >/dev/null 2>&1 || true
fi
exit 0
