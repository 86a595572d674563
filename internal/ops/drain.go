package ops

import (
	"context"
	"fmt"
	"io"

	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// Drain takes the local worker out of service without Auto Scaling, for
// maintenance. Without wait it only requests the state change; with wait it
// returns once the worker is DRAINED or has exited.
func Drain(ctx context.Context, w io.Writer, c *trinoadmin.Client, strategy trinoadmin.Strategy, wait bool, log *zap.Logger) error {
	if !wait {
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.Coordinator {
			return fmt.Errorf("%s is a coordinator, which cannot be drained", c.URL())
		}
		state := trinoadmin.StateDraining
		if trinoadmin.PlannedPath(strategy, info) != "DRAINING → DRAINED" {
			state = trinoadmin.StateShuttingDown
		}
		if err := c.SetState(ctx, state); err != nil {
			return err
		}
		fmt.Fprintf(w, "requested %s on %s (Trino %s)\n", state, c.URL(), info.Version)
		return nil
	}
	d := trinoadmin.NewDrainer(c, trinoadmin.DrainOptions{Strategy: strategy, Logger: log})
	res, err := d.Drain(ctx, log)
	if err != nil {
		return err
	}
	if res.Outcome == trinoadmin.OutcomeCoordinator {
		return fmt.Errorf("%s is a coordinator, which cannot be drained", c.URL())
	}
	fmt.Fprintf(w, "worker %s: %s (Trino %s, %s path)\n", c.URL(), res.Outcome, res.Version, res.Strategy)
	return nil
}

// Undrain returns a DRAINING or DRAINED worker to ACTIVE. A worker that is
// SHUTTING_DOWN cannot come back: Trino refuses it.
func Undrain(ctx context.Context, w io.Writer, c *trinoadmin.Client) error {
	if err := c.SetState(ctx, trinoadmin.StateActive); err != nil {
		return fmt.Errorf("reactivate: %w", err)
	}
	state, err := c.State(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "worker %s is %s\n", c.URL(), state)
	return nil
}
