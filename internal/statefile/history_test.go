package statefile_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/drainreport"
	"github.com/scaledownd/scaledownd/internal/statefile"
)

func report(n int) drainreport.Report {
	return drainreport.Report{Kind: drainreport.KindTerminate, InstanceID: fmt.Sprintf("i-%03d", n), Source: "sqs",
		Result: "CONTINUE", Reason: "drained",
		Timeline: drainreport.Timeline{Received: time.Unix(int64(1000+n), 0).UTC()}}
}

func TestHistoryKeepsTheLast50NewestFirst(t *testing.T) {
	dir := t.TempDir()
	h, err := statefile.OpenHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		if err := h.Append(statefile.ReportID(fmt.Sprint("key-", i)), report(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A second write of the same action replaces its report.
	again := report(59)
	again.Reason = "deadline"
	if err := h.Append(statefile.ReportID("key-59"), again); err != nil {
		t.Fatal(err)
	}
	// A new process (a restarted daemon, `scaledownd history`) reads the same.
	got, err := statefile.ReadHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != statefile.HistorySize {
		t.Fatalf("%d reports kept, want %d", len(got), statefile.HistorySize)
	}
	if got[0].Report.InstanceID != "i-059" || got[0].Report.Reason != "deadline" {
		t.Fatalf("newest is %+v, want the replaced i-059", got[0].Report)
	}
	if last := got[len(got)-1].Report.InstanceID; last != "i-010" {
		t.Fatalf("oldest kept is %s, want i-010", last)
	}
	ids := map[string]bool{}
	for _, e := range got {
		if ids[e.ID] {
			t.Fatalf("id %s twice", e.ID)
		}
		ids[e.ID] = true
	}
}

func TestHistoryInflightReportsSurviveAndEndWithAppend(t *testing.T) {
	dir := t.TempDir()
	h, err := statefile.OpenHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	id := statefile.ReportID("tok-1")
	r := report(1)
	r.HeartbeatsSent = 3
	if err := h.SaveInflight(id, r); err != nil {
		t.Fatal(err)
	}
	h2, err := statefile.OpenHistory(dir) // the restarted daemon
	if err != nil {
		t.Fatal(err)
	}
	back, ok := h2.LoadInflight(id)
	if !ok || back.HeartbeatsSent != 3 || !back.Timeline.Received.Equal(r.Timeline.Received) {
		t.Fatalf("in-flight report read back as %+v (%v)", back, ok)
	}
	if err := h2.Append(id, back); err != nil {
		t.Fatal(err)
	}
	if _, ok := h2.LoadInflight(id); ok {
		t.Fatal("the in-flight report outlived the finished one")
	}
	if list, _ := h2.List(); len(list) != 1 {
		t.Fatalf("%d reports, want 1", len(list))
	}
}

func TestHistoryCorruptFileIsSetAside(t *testing.T) {
	dir := t.TempDir()
	h, err := statefile.OpenHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "reports", "history.json")
	if err := os.WriteFile(file, []byte(`[{"id":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := statefile.ReadHistory(dir); err == nil {
		t.Fatal("a corrupt history read without an error")
	}
	if err := h.Append("x", report(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file + ".corrupt"); err != nil {
		t.Fatalf("corrupt history not set aside: %v", err)
	}
	if got, err := statefile.ReadHistory(dir); err != nil || len(got) != 1 {
		t.Fatalf("history after the corrupt one: %v, %v", got, err)
	}
}

func TestReadHistoryOfAnEmptyStateDirectory(t *testing.T) {
	got, err := statefile.ReadHistory(filepath.Join(t.TempDir(), "nothing-here"))
	if err != nil || len(got) != 0 {
		t.Fatalf("ReadHistory = %v, %v; want empty", got, err)
	}
}
