package lifecycle

import (
	"strings"
	"testing"
	"time"
)

func TestNewPlan(t *testing.T) {
	start := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name         string
		hook         HookTiming
		opts         PlanOptions
		wantInterval time.Duration
		wantDeadline time.Duration // after start
		wantLimit    string
		wantNote     string
	}{
		{
			name: "300 s heartbeat timeout caps at 30,000 s, not 48 h",
			hook: HookTiming{HeartbeatTimeout: 300 * time.Second},
			opts: PlanOptions{MaxDrainTime: 48 * time.Hour, SafetyMargin: 2 * time.Minute},
			// 100 × 300 s = 30,000 s, minus the 2 min margin.
			wantInterval: 150 * time.Second, wantDeadline: 30000*time.Second - 2*time.Minute, wantLimit: "global-timeout",
		},
		{
			name:         "7,200 s heartbeat timeout reaches the 48 h cap",
			hook:         HookTiming{HeartbeatTimeout: 7200 * time.Second},
			opts:         PlanOptions{MaxDrainTime: 48 * time.Hour, SafetyMargin: 2 * time.Minute},
			wantInterval: time.Hour, wantDeadline: 48*time.Hour - 2*time.Minute, wantLimit: "global-timeout",
		},
		{
			name:         "hook's own GlobalTimeout wins",
			hook:         HookTiming{HeartbeatTimeout: 3600 * time.Second, GlobalTimeout: 10 * time.Hour},
			opts:         PlanOptions{MaxDrainTime: 48 * time.Hour},
			wantInterval: 30 * time.Minute, wantDeadline: 10 * time.Hour, wantLimit: "global-timeout",
		},
		{
			name:         "max drain time below the cap",
			hook:         HookTiming{HeartbeatTimeout: 3600 * time.Second},
			opts:         PlanOptions{MaxDrainTime: 2 * time.Hour, SafetyMargin: time.Minute},
			wantInterval: 30 * time.Minute, wantDeadline: 2*time.Hour - time.Minute, wantLimit: "max-drain-time",
		},
		{
			name:         "configured interval above half the timeout is clamped",
			hook:         HookTiming{HeartbeatTimeout: 60 * time.Second},
			opts:         PlanOptions{HeartbeatInterval: 50 * time.Second, MaxDrainTime: time.Hour},
			wantInterval: 30 * time.Second, wantDeadline: time.Hour, wantLimit: "max-drain-time", wantNote: "more than half",
		},
		{
			name:         "configured interval below half is kept",
			hook:         HookTiming{HeartbeatTimeout: 60 * time.Second},
			opts:         PlanOptions{HeartbeatInterval: 10 * time.Second, MaxDrainTime: time.Hour},
			wantInterval: 10 * time.Second, wantDeadline: time.Hour, wantLimit: "max-drain-time",
		},
		{
			name:         "margin is at most a tenth of the limit",
			hook:         HookTiming{HeartbeatTimeout: 2 * time.Second},
			opts:         PlanOptions{MaxDrainTime: 48 * time.Hour, SafetyMargin: 2 * time.Minute},
			wantInterval: time.Second, wantDeadline: 200*time.Second - 20*time.Second, wantLimit: "global-timeout",
		},
		{
			name:         "unknown hook timing is safe for any hook",
			hook:         HookTiming{},
			opts:         PlanOptions{MaxDrainTime: 6 * time.Hour},
			wantInterval: 15 * time.Second, wantDeadline: 6 * time.Hour, wantLimit: "max-drain-time", wantNote: "unknown",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, notes := NewPlan(start, tt.hook, tt.opts)
			if p.HeartbeatInterval != tt.wantInterval {
				t.Errorf("interval = %s, want %s", p.HeartbeatInterval, tt.wantInterval)
			}
			if got := p.Deadline.Sub(start); got != tt.wantDeadline {
				t.Errorf("deadline = start+%s, want start+%s", got, tt.wantDeadline)
			}
			if p.Limit != tt.wantLimit {
				t.Errorf("limit = %s, want %s", p.Limit, tt.wantLimit)
			}
			if tt.wantNote == "" && len(notes) > 0 {
				t.Errorf("unexpected notes %v", notes)
			}
			if tt.wantNote != "" && !strings.Contains(strings.Join(notes, ";"), tt.wantNote) {
				t.Errorf("notes %v, want one mentioning %q", notes, tt.wantNote)
			}
			if hbt := tt.hook.HeartbeatTimeout; hbt > 0 && p.HeartbeatInterval > hbt/2 {
				t.Errorf("interval %s is above half the heartbeat timeout %s", p.HeartbeatInterval, hbt)
			}
		})
	}
}
