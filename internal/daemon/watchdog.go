package daemon

import (
	"context"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
)

// liveness reports whether the daemon's loops are making progress.
type liveness interface {
	Live() (bool, string)
}

// watchdog pets systemd's watchdog (WatchdogSec) at half its interval, but
// only while every loop makes progress: a stuck loop stops the pets and
// systemd restarts the daemon. It returns when ctx ends, at once when the
// watchdog is not enabled for this process.
func watchdog(ctx context.Context, h liveness, log *zap.Logger) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	petWhileLive(ctx, h, interval/2, log, func() error {
		_, err := daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		return err
	})
}

// petWhileLive calls pet every period while h is live.
func petWhileLive(ctx context.Context, h liveness, period time.Duration, log *zap.Logger, pet func() error) {
	t := time.NewTicker(period)
	defer t.Stop()
	warned := false
	for {
		if ok, why := h.Live(); ok {
			warned = false
			if err := pet(); err != nil {
				log.Warn("watchdog notification failed", zap.Error(err))
			}
		} else if !warned {
			log.Error("a main loop is stuck; no longer petting the systemd watchdog", zap.String("stuck", why))
			warned = true
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
