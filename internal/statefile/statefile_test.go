package statefile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

func record(key, phase string) Record {
	return Record{
		Key:      key,
		Event:    lifecycle.Event{InstanceID: "i-0123456789abcdef0", Group: "g", Hook: "h", Token: key, Time: time.Unix(1_800_000_000, 0).UTC()},
		Phase:    phase,
		Messages: []MessageRef{{ID: "m1", ReceiptHandle: "rh1", ReceiveCount: 2}},
		Plan:     &lifecycle.Plan{HeartbeatInterval: 30 * time.Second, Deadline: time.Unix(1_800_003_600, 0).UTC(), Limit: "global-timeout"},
		Hook:     &lifecycle.HookTiming{HeartbeatTimeout: time.Minute},
		Updated:  time.Unix(1_800_000_100, 0).UTC(),
	}
}

func TestSaveLoadRemove(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(record("tok-a", PhaseDraining)); err != nil {
		t.Fatal(err)
	}
	r := record("tok-a", PhaseCompleting) // overwrite
	r.Reason = "drained"
	if err := s.Save(r); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(record("tok-b", PhaseAcked)); err != nil {
		t.Fatal(err)
	}
	recs, problems, err := s.Load()
	if err != nil || len(problems) != 0 {
		t.Fatalf("load: %v %v", err, problems)
	}
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	got := map[string]Record{}
	for _, r := range recs {
		got[r.Key] = r
	}
	a := got["tok-a"]
	if a.Phase != PhaseCompleting || a.Reason != "drained" || a.Plan == nil || a.Plan.HeartbeatInterval != 30*time.Second ||
		len(a.Messages) != 1 || a.Messages[0].ReceiptHandle != "rh1" || !a.Event.Time.Equal(time.Unix(1_800_000_000, 0)) {
		t.Fatalf("record a = %+v", a)
	}
	if err := s.Remove("tok-a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("tok-a"); err != nil {
		t.Fatalf("removing twice: %v", err)
	}
	recs, _, _ = s.Load()
	if len(recs) != 1 || recs[0].Key != "tok-b" {
		t.Fatalf("after remove: %+v", recs)
	}
	// Files are private to the daemon.
	entries, _ := os.ReadDir(s.Dir())
	for _, e := range entries {
		fi, _ := e.Info()
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %s", e.Name(), fi.Mode().Perm())
		}
	}
}

func TestCorruptRecordsAreSetAside(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(record("good", PhaseDraining)); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"truncated.json":  `{"version":1,"key":"x","event":{"InstanceID":`,
		"empty.json":      ``,
		"future.json":     `{"version":99,"key":"x","event":{"InstanceID":"i-1","Group":"g","Hook":"h"},"phase":"draining"}`,
		"no-key.json":     `{"version":1,"event":{"InstanceID":"i-1","Group":"g","Hook":"h"},"phase":"draining"}`,
		"bad-phase.json":  `{"version":1,"key":"x","event":{"InstanceID":"i-1","Group":"g","Hook":"h"},"phase":"exploding"}`,
		"wrong-type.json": `{"version":"one"}`,
	}
	for name, body := range bad {
		if err := os.WriteFile(filepath.Join(s.Dir(), name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// An interrupted write leaves a temp file behind.
	if err := os.WriteFile(filepath.Join(s.Dir(), ".tmp-123"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, problems, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Key != "good" {
		t.Fatalf("records = %+v", recs)
	}
	if len(problems) != len(bad) {
		t.Fatalf("%d problems, want %d", len(problems), len(bad))
	}
	for _, p := range problems {
		if !strings.Contains(p.Error(), "moved it to") || !strings.HasSuffix(p.MovedTo, ".corrupt") {
			t.Errorf("problem text %q", p.Error())
		}
		if _, err := os.Stat(p.MovedTo); err != nil {
			t.Errorf("not moved aside: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), ".tmp-123")); !os.IsNotExist(err) {
		t.Error("temp file of an interrupted write left behind")
	}
	// A second load is clean: the bad files are out of the way.
	if _, problems, _ := s.Load(); len(problems) != 0 {
		t.Fatalf("second load still reports %d problems", len(problems))
	}
}

func TestOpenFailsClearly(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file); err == nil || !strings.Contains(err.Error(), "state directory") {
		t.Fatalf("err = %v", err)
	}
}
