package testpeers

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// The query-resource steps of the contract: another user's long query runs
// on the workers while the coordinator is asked which queries run where.

const (
	trinoOwner  = "alice"    // runs the long query
	trinoSource = "contract" // its X-Trino-Source
	// trinoLongQuery runs for minutes on the real cluster; the contract
	// cancels it.
	trinoLongQuery = "SELECT count(*) FROM tpch.tiny.lineitem a CROSS JOIN tpch.tiny.lineitem b WHERE length(a.comment || b.comment) > 0"
)

// trinoQueryEntry is a GET /v1/query entry (and the head of a
// GET /v1/query/{id} answer), as far as the contract checks it.
type trinoQueryEntry struct {
	QueryID string `json:"queryId"`
	State   string `json:"state"`
	Self    string `json:"self"`
	Session struct {
		User   string `json:"user"`
		Source string `json:"source"`
	} `json:"session"`
	QueryStats struct {
		CreateTime  string `json:"createTime"`
		ElapsedTime string `json:"elapsedTime"`
	} `json:"queryStats"`
	OutputStage *trinoStageTree `json:"outputStage"`
}

type trinoStageTree struct {
	StageID string `json:"stageId"`
	Tasks   []struct {
		TaskStatus struct {
			TaskID string `json:"taskId"`
			NodeID string `json:"nodeId"`
			State  string `json:"state"`
			Self   string `json:"self"`
		} `json:"taskStatus"`
	} `json:"tasks"`
	SubStages []trinoStageTree `json:"subStages"`
}

// runningOn returns the nodes with a RUNNING task in the tree.
func (s *trinoStageTree) runningOn() []string {
	var out []string
	for _, tk := range s.Tasks {
		if tk.TaskStatus.State == "RUNNING" {
			out = append(out, tk.TaskStatus.NodeID)
		}
	}
	for i := range s.SubStages {
		out = append(out, s.SubStages[i].runningOn()...)
	}
	return out
}

func trinoGetJSON(client *http.Client, url, user string, v any) (int, error) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if user != "" {
		req.Header.Set("X-Trino-User", user)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.Unmarshal(b, v)
}

// trinoStartQuery starts the long query and waits until it runs a task on
// a worker.
func trinoStartQuery(t *testing.T, client *http.Client, tgt trinoContractTarget) *trinoStarted {
	t.Helper()
	var id string
	if tgt.startQuery != nil {
		id, _ = tgt.startQuery()
	} else {
		req, _ := http.NewRequest(http.MethodPost, tgt.url+"/v1/statement", strings.NewReader(trinoLongQuery))
		req.Header.Set("X-Trino-User", trinoOwner)
		req.Header.Set("X-Trino-Source", trinoSource)
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST the long query: %v", err)
		}
		var doc trinoStatementDoc
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil || doc.ID == "" {
			t.Fatalf("POST the long query: %d %v", resp.StatusCode, err)
		}
		id = doc.ID
		go func(next string) { // a client that reads the answer, as Trino expects
			for next != "" {
				req, _ := http.NewRequest(http.MethodGet, next, nil)
				req.Header.Set("X-Trino-User", trinoOwner)
				resp, err := client.Do(req)
				if err != nil {
					return
				}
				var d trinoStatementDoc
				err = json.NewDecoder(resp.Body).Decode(&d)
				resp.Body.Close()
				if err != nil {
					return
				}
				next = d.NextURI
			}
		}(doc.NextURI)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		var info trinoQueryEntry
		code, err := trinoGetJSON(client, tgt.url+"/v1/query/"+id, trinoMgr, &info)
		if err == nil && code == http.StatusOK && info.OutputStage != nil {
			for _, n := range info.OutputStage.runningOn() {
				if n != "coordinator" {
					t.Logf("query %s %s, running a task on %s", id, info.State, n)
					return &trinoStarted{id: id, node: n}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("query %s runs no task on a worker after 90 s (last: %d %v, state %s)", id, code, err, info.State)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// trinoStopQuery cancels the query as its owner and waits until it failed.
func trinoStopQuery(t *testing.T, client *http.Client, tgt trinoContractTarget, q *trinoStarted) {
	t.Helper()
	if q == nil {
		t.Fatal("no query started")
	}
	req, _ := http.NewRequest(http.MethodDelete, tgt.url+"/v1/query/"+q.id, nil)
	req.Header.Set("X-Trino-User", trinoOwner)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("DELETE /v1/query/%s: %v", q.id, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE /v1/query/{id} by its owner: %d, want 204", resp.StatusCode)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var info trinoQueryEntry
		code, err := trinoGetJSON(client, tgt.url+"/v1/query/"+q.id, trinoMgr, &info)
		if err == nil && code == http.StatusOK && info.State == "FAILED" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("query %s not FAILED 30 s after DELETE (last: %d %v %s)", q.id, code, err, info.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// trinoCheckListed checks a GET /v1/query answer: the started query is
// listed with its owner, source, state and stats (want), or not at all.
func trinoCheckListed(want bool) func(t *testing.T, body []byte, q *trinoStarted) {
	return func(t *testing.T, body []byte, q *trinoStarted) {
		var list []trinoQueryEntry
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatalf("GET /v1/query: not a JSON array of queries: %v: %s", err, trinoClip(string(body)))
		}
		var e *trinoQueryEntry
		for i := range list {
			if list[i].QueryID == q.id {
				e = &list[i]
			}
			if list[i].OutputStage != nil {
				t.Errorf("list entry %s has an outputStage; BasicQueryInfo has none", list[i].QueryID)
			}
		}
		if !want {
			if e != nil {
				t.Errorf("query %s of %s is listed for a user without view permission", q.id, trinoOwner)
			}
			return
		}
		if e == nil {
			t.Fatalf("query %s not listed among %d", q.id, len(list))
		}
		if e.Session.User != trinoOwner || e.Session.Source != trinoSource || e.State != "RUNNING" {
			t.Errorf("entry: user %q source %q state %q, want %s %s RUNNING", e.Session.User, e.Session.Source, e.State, trinoOwner, trinoSource)
		}
		if _, err := time.Parse(time.RFC3339Nano, e.QueryStats.CreateTime); err != nil {
			t.Errorf("queryStats.createTime %q: %v", e.QueryStats.CreateTime, err)
		}
		if d, err := trinoadmin.ParseDuration(e.QueryStats.ElapsedTime); err != nil || d <= 0 {
			t.Errorf("queryStats.elapsedTime %q: %v", e.QueryStats.ElapsedTime, err)
		}
		if !strings.HasSuffix(e.Self, "/v1/query/"+q.id) {
			t.Errorf("self %q", e.Self)
		}
	}
}

// trinoCheckDetail checks a GET /v1/query/{id} answer: the stage tree
// places a running task on the worker.
func trinoCheckDetail(t *testing.T, body []byte, q *trinoStarted) {
	var info trinoQueryEntry
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatalf("GET /v1/query/{id}: %v: %s", err, trinoClip(string(body)))
	}
	if info.QueryID != q.id || info.Session.User != trinoOwner || info.State != "RUNNING" || info.OutputStage == nil {
		t.Fatalf("query %s of %s %s, outputStage %v", info.QueryID, info.Session.User, info.State, info.OutputStage != nil)
	}
	if !strings.HasPrefix(info.OutputStage.StageID, q.id+".") {
		t.Errorf("outputStage.stageId %q", info.OutputStage.StageID)
	}
	if on := info.OutputStage.runningOn(); !slices.Contains(on, q.node) {
		t.Errorf("running tasks on %v, want one on %s", on, q.node)
	}
}

// trinoCheckBlocking runs the daemon's BlockingQueries as c.user for the
// node the query runs on.
func trinoCheckBlocking(t *testing.T, tgt trinoContractTarget, c trinoContractCase, q *trinoStarted) {
	t.Helper()
	if q == nil {
		t.Fatal("no query started")
	}
	wc, err := trinoadmin.New(trinoadmin.Options{URL: tgt.url, User: c.user, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	co := wc.Coordinator(tgt.url)
	deadline := time.Now().Add(20 * time.Second) // after a cancel the tasks end within seconds
	for {
		qs, err := co.BlockingQueries(context.Background(), q.node)
		if err != nil {
			t.Fatalf("BlockingQueries(%s) as %s: %v", q.node, c.user, err)
		}
		i := slices.IndexFunc(qs, func(x trinoadmin.Query) bool { return x.ID == q.id })
		if (i >= 0) == c.wantListed {
			if i >= 0 {
				got := qs[i]
				if got.User != trinoOwner || got.Source != trinoSource || got.State != "RUNNING" || got.Elapsed <= 0 || got.Created.IsZero() {
					t.Errorf("BlockingQueries: %+v, want user %s source %s RUNNING with elapsed and created", got, trinoOwner, trinoSource)
				}
				t.Logf("BlockingQueries(%s): %+v", q.node, qs)
			}
			return
		}
		if !c.wantListed && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		t.Fatalf("BlockingQueries(%s) as %s: %+v; want query %s listed: %v", q.node, c.user, qs, q.id, c.wantListed)
	}
}
