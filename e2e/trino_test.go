//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// queryUser runs the test queries; every user may query (rules.json).
const queryUser = "e2e"

var trinoClient = &http.Client{Timeout: 30 * time.Second}

// statementDoc is one answer of the statement protocol.
type statementDoc struct {
	ID      string            `json:"id"`
	NextURI string            `json:"nextUri"`
	Data    []json.RawMessage `json:"data"`
	Stats   struct {
		State string `json:"state"`
	} `json:"stats"`
	Error *struct {
		Message   string `json:"message"`
		ErrorName string `json:"errorName"`
	} `json:"error"`
}

// trinoQuery is a query run through the statement protocol (POST
// /v1/statement, then nextUri until there is none).
type trinoQuery struct {
	SQL       string
	ID        string
	Submitted time.Time

	mu       sync.Mutex
	next     string
	rows     []json.RawMessage
	state    string
	errMsg   string
	finished time.Time
	done     chan struct{}
}

func trinoRequest(method, url, body string) (*statementDoc, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Trino-User", queryUser)
	resp, err := trinoClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: HTTP %d %s", method, url, resp.StatusCode, clip(string(b), 200))
	}
	var doc statementDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s %s: %v", method, url, err)
	}
	return &doc, nil
}

// submitQuery starts sql on the coordinator and follows it in the
// background. A query still running when the test ends is cancelled.
func submitQuery(t *testing.T, coord, sql string) *trinoQuery {
	t.Helper()
	q := &trinoQuery{SQL: sql, Submitted: time.Now(), done: make(chan struct{})}
	doc, err := trinoRequest(http.MethodPost, coord+"/v1/statement", sql)
	if err != nil {
		t.Fatalf("submit %q: %v", sql, err)
	}
	q.ID = doc.ID
	q.absorb(doc)
	go q.follow()
	t.Cleanup(func() {
		q.cancel()
		select {
		case <-q.done:
		case <-time.After(30 * time.Second):
		}
	})
	return q
}

// absorb takes one answer; it reports whether the query goes on.
func (q *trinoQuery) absorb(doc *statementDoc) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.rows = append(q.rows, doc.Data...)
	q.state = doc.Stats.State
	if doc.Error != nil {
		q.errMsg = doc.Error.ErrorName + ": " + doc.Error.Message
	}
	q.next = doc.NextURI
	return q.next != ""
}

func (q *trinoQuery) follow() {
	defer close(q.done)
	failures := 0
	for {
		q.mu.Lock()
		next := q.next
		q.mu.Unlock()
		if next == "" {
			break
		}
		t0 := time.Now()
		doc, err := trinoRequest(http.MethodGet, next, "")
		if err != nil {
			// the coordinator is loaded, not gone: retry a while
			if failures++; failures > 20 {
				q.mu.Lock()
				q.errMsg = "client: " + err.Error()
				q.state = "CLIENT_ERROR"
				q.next = ""
				q.mu.Unlock()
				break
			}
			time.Sleep(time.Second)
			continue
		}
		failures = 0
		if !q.absorb(doc) {
			break
		}
		if len(doc.Data) == 0 && time.Since(t0) < 50*time.Millisecond {
			time.Sleep(50 * time.Millisecond)
		}
	}
	q.mu.Lock()
	q.finished = time.Now()
	q.mu.Unlock()
}

// cancel asks the coordinator to cancel the query (DELETE nextUri).
func (q *trinoQuery) cancel() {
	q.mu.Lock()
	next := q.next
	q.mu.Unlock()
	if next == "" {
		return
	}
	req, _ := http.NewRequest(http.MethodDelete, next, nil)
	req.Header.Set("X-Trino-User", queryUser)
	if resp, err := trinoClient.Do(req); err == nil {
		resp.Body.Close()
	}
}

// queryResult is a finished query.
type queryResult struct {
	State    string
	Err      string
	Rows     []json.RawMessage
	Finished time.Time
	Elapsed  time.Duration
}

// wait waits until the query ends; it fails the test after timeout.
func (q *trinoQuery) wait(t *testing.T, timeout time.Duration) queryResult {
	t.Helper()
	select {
	case <-q.done:
	case <-time.After(timeout):
		t.Fatalf("query %s (%s) still running after %s", q.ID, clip(q.SQL, 80), timeout)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return queryResult{State: q.state, Err: q.errMsg, Rows: q.rows, Finished: q.finished, Elapsed: q.finished.Sub(q.Submitted)}
}

func (q *trinoQuery) isDone() bool {
	select {
	case <-q.done:
		return true
	default:
		return false
	}
}

// count returns the single bigint of a `SELECT count(*)` result.
func (r queryResult) count() (int64, error) {
	if len(r.Rows) != 1 {
		return 0, fmt.Errorf("%d rows, want 1", len(r.Rows))
	}
	var row []json.Number
	dec := json.NewDecoder(bytes.NewReader(r.Rows[0]))
	dec.UseNumber()
	if err := dec.Decode(&row); err != nil || len(row) != 1 {
		return 0, fmt.Errorf("row %s: %v", r.Rows[0], err)
	}
	return row[0].Int64()
}

// expectCount fails the test unless the query FINISHED with count want.
func (r queryResult) expectCount(t *testing.T, q *trinoQuery, want int64) {
	t.Helper()
	if r.State != "FINISHED" || r.Err != "" {
		t.Fatalf("query %s (%s) ended %s: %s", q.ID, clip(q.SQL, 80), r.State, r.Err)
	}
	got, err := r.count()
	if err != nil {
		t.Fatalf("query %s: %v", q.ID, err)
	}
	if got != want {
		t.Fatalf("query %s returned %d, want %d", q.ID, got, want)
	}
}

// rowsOf runs sql to the end and returns its rows decoded as strings.
func rowsOf(coord, sql string, timeout time.Duration) ([][]string, error) {
	doc, err := trinoRequest(http.MethodPost, coord+"/v1/statement", sql)
	if err != nil {
		return nil, err
	}
	var raw []json.RawMessage
	deadline := time.Now().Add(timeout)
	for {
		raw = append(raw, doc.Data...)
		if doc.Error != nil {
			return nil, fmt.Errorf("%s: %s", doc.Error.ErrorName, doc.Error.Message)
		}
		if doc.NextURI == "" {
			break
		}
		if time.Now().After(deadline) {
			if d, err := http.NewRequest(http.MethodDelete, doc.NextURI, nil); err == nil {
				d.Header.Set("X-Trino-User", queryUser)
				if resp, err := trinoClient.Do(d); err == nil {
					resp.Body.Close()
				}
			}
			return nil, fmt.Errorf("%q not done after %s (state %s)", clip(sql, 60), timeout, doc.Stats.State)
		}
		if doc, err = trinoRequest(http.MethodGet, doc.NextURI, ""); err != nil {
			return nil, err
		}
	}
	out := make([][]string, 0, len(raw))
	for _, r := range raw {
		var row []any
		if err := json.Unmarshal(r, &row); err != nil {
			return nil, err
		}
		s := make([]string, len(row))
		for i, v := range row {
			s[i] = fmt.Sprint(v)
		}
		out = append(out, s)
	}
	return out, nil
}

// nodeView is the coordinator's system.runtime.nodes: node id → state
// (lowercase: active, draining, drained, shutting_down).
func nodeView(c clusterEnv) (map[string]string, error) {
	rows, err := rowsOf(c.CoordURL, "SELECT node_id, state FROM system.runtime.nodes", 20*time.Second)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range rows {
		out[r[0]] = r[1]
	}
	return out, nil
}

// waitNodeView polls the coordinator's view of node until ok(state, listed).
func waitNodeView(c clusterEnv, node string, timeout time.Duration, ok func(state string, listed bool) bool) error {
	deadline := time.Now().Add(timeout)
	last := "nothing read yet"
	for {
		view, err := nodeView(c)
		if err == nil {
			state, listed := view[node]
			if ok(state, listed) {
				return nil
			}
			last = fmt.Sprintf("system.runtime.nodes: %v", view)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("coordinator's view of %s not as wanted after %s; last: %s", node, timeout, last)
		}
		time.Sleep(time.Second)
	}
}

// taskRun is one task of a query, from the coordinator's query info.
type taskRun struct {
	Stage, Node, State string
	Created, Ended     time.Time // Ended is zero while the task runs
}

type stageJSON struct {
	StageID string `json:"stageId"`
	Tasks   []struct {
		TaskStatus struct {
			NodeID string `json:"nodeId"`
			State  string `json:"state"`
		} `json:"taskStatus"`
		Stats struct {
			CreateTime string `json:"createTime"`
			EndTime    string `json:"endTime"`
		} `json:"stats"`
	} `json:"tasks"`
	SubStages []stageJSON `json:"subStages"`
}

// queryTasks reads GET /v1/query/{id} from the coordinator: the query's
// state and every task with its node.
func queryTasks(c clusterEnv, id string) (string, []taskRun, error) {
	req, _ := http.NewRequest(http.MethodGet, c.CoordURL+"/v1/query/"+id, nil)
	req.Header.Set("X-Trino-User", queryUser)
	resp, err := trinoClient.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("query info %s: HTTP %d %s", id, resp.StatusCode, clip(string(b), 200))
	}
	var info struct {
		State       string     `json:"state"`
		OutputStage *stageJSON `json:"outputStage"`
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return "", nil, fmt.Errorf("query info %s: %v", id, err)
	}
	var tasks []taskRun
	var walk func(s *stageJSON)
	walk = func(s *stageJSON) {
		for _, tk := range s.Tasks {
			r := taskRun{Stage: s.StageID, Node: tk.TaskStatus.NodeID, State: tk.TaskStatus.State}
			r.Created, _ = time.Parse(time.RFC3339Nano, tk.Stats.CreateTime)
			r.Ended, _ = time.Parse(time.RFC3339Nano, tk.Stats.EndTime)
			tasks = append(tasks, r)
		}
		for i := range s.SubStages {
			walk(&s.SubStages[i])
		}
	}
	if info.OutputStage != nil {
		walk(info.OutputStage)
	}
	return info.State, tasks, nil
}

func describeTasks(tasks []taskRun) string {
	var parts []string
	for _, tk := range tasks {
		end := "running"
		if !tk.Ended.IsZero() {
			end = tk.Ended.Format("15:04:05.000")
		}
		parts = append(parts, fmt.Sprintf("%s on %s %s (%s–%s)", tk.Stage[strings.LastIndexByte(tk.Stage, '.')+1:], tk.Node, tk.State, tk.Created.Format("15:04:05.000"), end))
	}
	return strings.Join(parts, "; ")
}

// waitRunningOn waits until one stage of the query runs a task on every
// node (RUNNING), e.g. the join stage of longQuery on both workers.
func waitRunningOn(t *testing.T, c clusterEnv, q *trinoQuery, timeout time.Duration, nodes ...string) []taskRun {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := "no query info yet"
	for {
		if q.isDone() {
			r := q.wait(t, time.Second)
			t.Fatalf("query %s ended (%s %s) before it ran on %v; tasks: %s", q.ID, r.State, r.Err, nodes, last)
		}
		state, tasks, err := queryTasks(c, q.ID)
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%s: %s", state, describeTasks(tasks))
			running := map[string]map[string]bool{} // stage → nodes with a RUNNING task
			for _, tk := range tasks {
				if tk.State == "RUNNING" {
					if running[tk.Stage] == nil {
						running[tk.Stage] = map[string]bool{}
					}
					running[tk.Stage][tk.Node] = true
				}
			}
			for _, on := range running {
				all := true
				for _, n := range nodes {
					all = all && on[n]
				}
				if all {
					return tasks
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("query %s has no stage running on each of %v after %s; last: %s", q.ID, nodes, timeout, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
