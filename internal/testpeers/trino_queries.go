package testpeers

// The coordinator's query resource, as Trino 476 serves it
// (docs/trino-476-api.md, "Which queries hold a drain"):
//
//	GET    /v1/query          every query the user may view, BasicQueryInfo
//	GET    /v1/query/{id}     one query (QueryInfo) with its stage tree and
//	                          each task's nodeId and state
//	DELETE /v1/query/{id}     cancel (the owner): 204
//
// All need an identity (401 otherwise). A user in
// TrinoOptions.QueryViewDenied sees only its own queries in the list and
// gets 403 "Error 403 Forbidden: HTTP 403 Forbidden" for the others'; an
// unknown id is 410 "Error 410 Gone: HTTP 410 Gone"; other methods 405.
// The list holds the statement-protocol queries the fake ran (FINISHED or
// FAILED) and the queries started with StartQuery.

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Wire texts of the query resource observed on 476.
const (
	TrinoMsgQueryForbidden = "Error 403 Forbidden: HTTP 403 Forbidden"
	TrinoMsgQueryGone      = "Error 410 Gone: HTTP 410 Gone"
)

// StartQuery makes the coordinator run a query of user, sent from source,
// with one running task on each of workers (the workers count them as
// active tasks). It is listed RUNNING by GET /v1/query until finish is
// called (idempotent), then FINISHED; a task that failed because its
// worker's process ended makes it FAILED. It returns the query id.
func (w *TrinoWorker) StartQuery(user, source string, workers ...*TrinoWorker) (id string, finish func()) {
	now := w.now()
	id = trinoLocked(w, func() string { return w.queryIDLocked(now) })
	q := &trinoQuery{id: id, user: user, source: source, created: now, workers: workers,
		sql: "SELECT count(*) FROM tpch.tiny.lineitem a CROSS JOIN tpch.tiny.orders b"}
	for i, wk := range workers {
		wk.mu.Lock()
		t, _ := wk.addTaskLocked(fmt.Sprintf("%s.1.%d.0", id, i))
		wk.mu.Unlock()
		q.tasks = append(q.tasks, t)
	}
	w.mu.Lock()
	w.queries[id] = q
	w.broadcastLocked()
	w.mu.Unlock()
	return id, func() { w.endQuery(q, false) }
}

// endQuery ends a StartQuery query (a statement-protocol query has ended
// when it was created: nothing to do).
func (w *TrinoWorker) endQuery(q *trinoQuery, cancel bool) {
	w.mu.Lock()
	if !q.ended.IsZero() {
		w.mu.Unlock()
		return
	}
	q.ended, q.canceled = w.now(), cancel
	w.mu.Unlock()
	end := trinoTaskFinished
	if cancel {
		end = trinoTaskFailed // CANCELED on the wire
	}
	for i, wk := range q.workers {
		wk.mu.Lock()
		if q.tasks[i].state == trinoTaskRunning {
			q.tasks[i].state = end
			wk.broadcastLocked()
		}
		wk.mu.Unlock()
	}
}

// outputStage renders the query's stage tree: the output stage over one
// stage with a task on each worker (none for a statement-protocol query),
// FINISHED unless a task runs. It takes the workers' locks one at a time
// (never with the coordinator's held) and reports whether a task failed.
func (q *trinoQuery) outputStage(canceled bool, heartbeat string) (*trinoStageJSON, bool) {
	stage := func(n string) trinoStageJSON {
		return trinoStageJSON{StageID: q.id + n, State: "FINISHED", Tasks: []trinoTaskInfoJSON{}, SubStages: []trinoStageJSON{}}
	}
	out, sub, failed := stage(".0"), stage(".1"), false
	for i, wk := range q.workers {
		st := trinoLocked(wk, func() trinoTaskState { return q.tasks[i].state })
		s := [...]string{trinoTaskRunning: "RUNNING", trinoTaskFinished: "FINISHED", trinoTaskFailed: "FAILED"}[st]
		switch {
		case st == trinoTaskFailed && canceled:
			s = "CANCELED"
		case st == trinoTaskFailed:
			failed = true
		case st == trinoTaskRunning:
			sub.State, out.State = "RUNNING", "RUNNING"
		}
		// a real coordinator names the worker's own URL
		id := q.tasks[i].id
		sub.Tasks = append(sub.Tasks, trinoTaskInfoJSON{TaskStatus: trinoTaskStatusJSON{TaskID: id, TaskInstID: id,
			Version: 2, State: s, Self: wk.URL() + "/v1/task/" + id, NodeID: wk.opts.NodeID}, LastHeartbeat: heartbeat})
	}
	if len(q.workers) > 0 {
		out.SubStages = append(out.SubStages, sub)
	}
	return &out, failed
}

// trinoQuerySession is the part of the session the fake fills in.
type trinoQuerySession struct {
	QueryID       string   `json:"queryId"`
	User          string   `json:"user"`
	OriginalUser  string   `json:"originalUser"`
	Groups        []string `json:"groups"`
	Principal     string   `json:"principal,omitempty"`
	Source        string   `json:"source,omitempty"`
	TimeZoneKey   int      `json:"timeZoneKey"`
	Locale        string   `json:"locale"`
	UserAgent     string   `json:"userAgent,omitempty"`
	Start         string   `json:"start"`
	ProtocolName  string   `json:"protocolName"`
	TimeZone      string   `json:"timeZone"`
	ClientTags    []string `json:"clientTags"`
	ResourceEsts  struct{} `json:"resourceEstimates"`
	SystemProps   struct{} `json:"systemProperties"`
	CatalogProps  struct{} `json:"catalogProperties"`
	PreparedStmts struct{} `json:"preparedStatements"`
}

type trinoQueryStats struct {
	CreateTime         string  `json:"createTime"`
	QueuedTime         string  `json:"queuedTime"`
	ElapsedTime        string  `json:"elapsedTime"`
	ExecutionTime      string  `json:"executionTime"`
	FailedTasks        int     `json:"failedTasks"`
	TotalDrivers       int     `json:"totalDrivers"`
	QueuedDrivers      int     `json:"queuedDrivers"`
	RunningDrivers     int     `json:"runningDrivers"`
	CompletedDrivers   int     `json:"completedDrivers"`
	BlockedDrivers     int     `json:"blockedDrivers"`
	FullyBlocked       bool    `json:"fullyBlocked"`
	BlockedReasons     []any   `json:"blockedReasons"`
	ProgressPercentage float64 `json:"progressPercentage"`
	RunningPercentage  float64 `json:"runningPercentage"`
}

// trinoBasicQueryInfo is one GET /v1/query entry, keys in 476's order.
type trinoBasicQueryInfo struct {
	QueryID         string            `json:"queryId"`
	Session         trinoQuerySession `json:"session"`
	ResourceGroupID []string          `json:"resourceGroupId"`
	State           string            `json:"state"`
	Scheduled       bool              `json:"scheduled"`
	Self            string            `json:"self"`
	Query           string            `json:"query"`
	QueryStats      trinoQueryStats   `json:"queryStats"`
	QueryType       string            `json:"queryType"`
	RetryPolicy     string            `json:"retryPolicy"`
}

type trinoTaskStatusJSON struct {
	TaskID     string `json:"taskId"`
	TaskInstID string `json:"taskInstanceId"`
	Version    int    `json:"version"`
	State      string `json:"state"`
	Self       string `json:"self"`
	NodeID     string `json:"nodeId"`
}

type trinoTaskInfoJSON struct {
	TaskStatus    trinoTaskStatusJSON `json:"taskStatus"`
	LastHeartbeat string              `json:"lastHeartbeat"`
	NeedsPlan     bool                `json:"needsPlan"`
}

type trinoStageJSON struct {
	StageID   string              `json:"stageId"`
	State     string              `json:"state"`
	Tasks     []trinoTaskInfoJSON `json:"tasks"`
	SubStages []trinoStageJSON    `json:"subStages"`
}

// trinoQueryInfo is GET /v1/query/{id}: BasicQueryInfo's keys plus the
// stage tree (476 also sends inputs, warnings, … which the fake leaves out).
type trinoQueryInfo struct {
	QueryID     string            `json:"queryId"`
	Session     trinoQuerySession `json:"session"`
	State       string            `json:"state"`
	Self        string            `json:"self"`
	FieldNames  []string          `json:"fieldNames"`
	Query       string            `json:"query"`
	QueryStats  trinoQueryStats   `json:"queryStats"`
	OutputStage *trinoStageJSON   `json:"outputStage,omitempty"`
	Warnings    []any             `json:"warnings"`
	QueryType   string            `json:"queryType"`
	RetryPolicy string            `json:"retryPolicy"`
	Pruned      bool              `json:"pruned"`
	Scheduled   bool              `json:"scheduled"`
}

// trinoQueryRow is one query as both answers describe it.
type trinoQueryRow struct {
	basic trinoBasicQueryInfo
	q     *trinoQuery
	stage *trinoStageJSON
}

// queryRows lists every query the coordinator knows, oldest first.
func (w *TrinoWorker) queryRows(base string) []trinoQueryRow {
	w.mu.Lock()
	var rows []trinoQueryRow
	now := w.now()
	for _, q := range w.queries {
		state, end := "RUNNING", cmp.Or(q.ended, now)
		switch {
		case q.failure != nil || q.canceled:
			state = "FAILED"
		case !q.ended.IsZero():
			state = "FINISHED"
		}
		b := trinoBasicQueryInfo{QueryID: q.id, ResourceGroupID: []string{"global"}, State: state, Scheduled: true,
			Self: base + "/v1/query/" + q.id, Query: q.sql, QueryType: "SELECT", RetryPolicy: "NONE"}
		b.Session = trinoQuerySession{QueryID: q.id, User: q.user, OriginalUser: q.user, Groups: []string{}, Principal: q.user,
			Source: q.source, Locale: "en_US", Start: q.created.UTC().Format(time.RFC3339Nano), ProtocolName: "Trino",
			TimeZone: "UTC", ClientTags: []string{}}
		el := TrinoDuration(end.Sub(q.created))
		b.QueryStats = trinoQueryStats{CreateTime: q.created.UTC().Format("2006-01-02T15:04:05.000Z"), QueuedTime: "1.19ms",
			ElapsedTime: el, ExecutionTime: el, BlockedReasons: []any{}}
		rows = append(rows, trinoQueryRow{basic: b, q: q})
	}
	w.mu.Unlock()
	for i, r := range rows {
		// a StartQuery query is FAILED before its tasks only when cancelled
		stage, failed := r.q.outputStage(r.basic.State == "FAILED", r.basic.QueryStats.CreateTime)
		rows[i].stage = stage
		if failed { // a failed task fails its query
			rows[i].basic.State = "FAILED"
		}
	}
	slices.SortFunc(rows, func(a, b trinoQueryRow) int { return strings.Compare(a.basic.QueryID, b.basic.QueryID) })
	return rows
}

func (w *TrinoWorker) mayView(user, owner string) bool {
	return user == owner || !slices.Contains(w.opts.QueryViewDenied, user)
}

// queryResource serves /v1/query and /v1/query/{id}.
func (w *TrinoWorker) queryResource(rw http.ResponseWriter, r *http.Request) {
	base := "http://" + r.Host
	id := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/v1/query"), "/")
	if r.Method != http.MethodGet && r.Method != http.MethodHead && (id == "" || r.Method != http.MethodDelete) {
		allow := "DELETE,GET,OPTIONS"
		if id == "" {
			allow = "GET,OPTIONS"
		}
		trinoMethodNotAllowed(rw, allow)
		return
	}
	user, ok := w.authenticate(rw, r)
	if !ok {
		return
	}
	rows := w.queryRows(base)
	switch i := slices.IndexFunc(rows, func(q trinoQueryRow) bool { return q.basic.QueryID == id }); {
	case id == "":
		list := []trinoBasicQueryInfo{}
		for _, q := range rows {
			if w.mayView(user, q.basic.Session.User) {
				list = append(list, q.basic)
			}
		}
		trinoJSON(rw, list)
	case i < 0:
		trinoText(rw, http.StatusGone, "text/plain", TrinoMsgQueryGone)
	case !w.mayView(user, rows[i].basic.Session.User):
		trinoText(rw, http.StatusForbidden, "text/plain", TrinoMsgQueryForbidden)
	case r.Method == http.MethodDelete:
		w.endQuery(rows[i].q, true)
		rw.WriteHeader(http.StatusNoContent)
	default:
		b := rows[i].basic
		trinoJSON(rw, trinoQueryInfo{QueryID: b.QueryID, Session: b.Session, State: b.State, Self: b.Self, FieldNames: []string{"_col0"},
			Query: b.Query, QueryStats: b.QueryStats, OutputStage: rows[i].stage, Warnings: []any{}, QueryType: b.QueryType,
			RetryPolicy: b.RetryPolicy, Scheduled: true})
	}
}
