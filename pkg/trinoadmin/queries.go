package trinoadmin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Which queries hold a drain. On Trino 476 the SQL view of tasks cannot
// answer this: system.runtime.tasks is read from the nodes the coordinator
// lists as active only, so a worker's tasks vanish from it 5–10 s after the
// worker turned DRAINING (observed; the system connector schedules its
// splits on active nodes). The coordinator's REST API still shows them:
//
//	GET /v1/query        every query the user may view (BasicQueryInfo)
//	GET /v1/query/{id}   one query with its stages and each task's nodeId
//
// Both need an authenticated user and the "view" query permission for other
// users' queries; a user without it gets only its own queries in the list
// (no error) and 403 for the others'. They need no permission to execute
// queries.

// Query is a query that still has tasks on a worker, as the coordinator
// lists it (Coordinator.BlockingQueries).
type Query struct {
	ID, User, Source, State string
	Created                 time.Time
	Elapsed                 time.Duration
}

// maxQueryDetails bounds the GET /v1/query/{id} requests of one
// BlockingQueries call: the oldest unfinished queries are looked at first.
const maxQueryDetails = 50

// queryDone are the final query states; finalTask the final task states.
var (
	queryDone = []string{"FINISHED", "FAILED"}
	taskDone  = []string{"FINISHED", "CANCELED", "ABORTED", "FAILED"}
)

// BlockingQueries lists the queries that still have an unfinished task on
// the node nodeID (its node.id, as GET /v1/status gives it), longest
// running first. It reads GET /v1/query, then GET /v1/query/{id} for each
// unfinished query (at most 50, the oldest first), within the
// coordinator's query timeout. A query that ends between the two requests
// is left out.
func (co *Coordinator) BlockingQueries(ctx context.Context, nodeID string) ([]Query, error) {
	if co.baseErr != nil {
		return nil, co.baseErr
	}
	if nodeID == "" {
		return nil, errors.New("blocking queries: empty node id")
	}
	ctx, cancel := context.WithTimeout(ctx, co.queryTimeout)
	defer cancel()

	var list []basicQueryInfo
	if _, _, err := co.exchange(ctx, http.MethodGet, co.base.String()+"/v1/query", "GET /v1/query", nil, 16<<20, &list); err != nil {
		return nil, err
	}
	var open []basicQueryInfo
	for _, q := range list {
		if q.QueryID != "" && !slices.Contains(queryDone, q.State) {
			open = append(open, q)
		}
	}
	slices.SortStableFunc(open, func(a, b basicQueryInfo) int { return a.QueryStats.CreateTime.Compare(b.QueryStats.CreateTime) })
	if len(open) > maxQueryDetails {
		open = open[:maxQueryDetails]
	}
	var out []Query
	for _, q := range open {
		var info queryInfo
		_, _, err := co.exchange(ctx, http.MethodGet, co.base.String()+"/v1/query/"+url.PathEscape(q.QueryID), "GET /v1/query/{id}", nil, 32<<20, &info)
		var se *StatusError
		if errors.As(err, &se) && (se.Code == http.StatusGone || se.Code == http.StatusNotFound) {
			continue // ended and forgotten since the list (476 answers 410 Gone)
		}
		if err != nil {
			return nil, err
		}
		if slices.Contains(queryDone, info.State) || info.OutputStage == nil || !info.OutputStage.runsOn(nodeID) {
			continue
		}
		b := q
		if info.QueryID != "" {
			b = info.basicQueryInfo
		}
		out = append(out, b.query(co.now()))
	}
	sortQueries(out)
	return out, nil
}

// basicQueryInfo is the part of a GET /v1/query entry (and of a
// GET /v1/query/{id} answer) that names the query.
type basicQueryInfo struct {
	QueryID string `json:"queryId"`
	State   string `json:"state"`
	Session struct {
		User   string `json:"user"`
		Source string `json:"source"`
	} `json:"session"`
	QueryStats struct {
		CreateTime  time.Time `json:"createTime"`
		ElapsedTime string    `json:"elapsedTime"`
	} `json:"queryStats"`
}

// query describes the query at now. The coordinator's elapsedTime has
// two decimals in its largest unit ("1.67m", "2.05h"); where that rounds
// off more than 10 ms, now − createTime is taken instead if it agrees with
// it (no clock skew beyond the rounding), else elapsedTime as it is.
func (b basicQueryInfo) query(now time.Time) Query {
	el, unit, _ := parseDuration(b.QueryStats.ElapsedTime) // 0, 0 when unreadable
	if unit > time.Second && !b.QueryStats.CreateTime.IsZero() {
		if own := now.Sub(b.QueryStats.CreateTime); own > el-unit/100 && own < el+unit/100 {
			el = own
		}
	}
	return Query{ID: b.QueryID, User: b.Session.User, Source: b.Session.Source, State: b.State,
		Created: b.QueryStats.CreateTime, Elapsed: el}
}

// queryInfo is the part of GET /v1/query/{id} that places its tasks.
type queryInfo struct {
	basicQueryInfo
	OutputStage *stageInfo `json:"outputStage"`
}

type stageInfo struct {
	Tasks []struct {
		TaskStatus struct {
			NodeID string `json:"nodeId"`
			State  string `json:"state"`
		} `json:"taskStatus"`
	} `json:"tasks"`
	SubStages []stageInfo `json:"subStages"`
}

// runsOn reports whether the stage tree has an unfinished task on nodeID.
func (s *stageInfo) runsOn(nodeID string) bool {
	for _, t := range s.Tasks {
		if t.TaskStatus.NodeID == nodeID && !slices.Contains(taskDone, t.TaskStatus.State) {
			return true
		}
	}
	for i := range s.SubStages {
		if s.SubStages[i].runsOn(nodeID) {
			return true
		}
	}
	return false
}

// ParseDuration reads an airlift Duration as Trino writes it: a decimal
// number and a unit among ns, us, ms, s, m, h, d ("6.42s", "1.19ms",
// "5.87m").
func ParseDuration(s string) (time.Duration, error) {
	d, _, err := parseDuration(s)
	return d, err
}

// parseDuration is ParseDuration that also returns the unit.
func parseDuration(s string) (d, unit time.Duration, err error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i <= 0 {
		return 0, 0, fmt.Errorf("duration %q: want a number and a unit", s)
	}
	n, err := strconv.ParseFloat(s[:i], 64)
	if err != nil {
		return 0, 0, fmt.Errorf("duration %q: %w", s, err)
	}
	unit = map[string]time.Duration{"ns": time.Nanosecond, "us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[s[i:]]
	if unit == 0 {
		return 0, 0, fmt.Errorf("duration %q: unknown unit %q", s, s[i:])
	}
	return time.Duration(n * float64(unit)), unit, nil
}

// WorkerQueries lists the queries that hold the worker behind worker: its
// node id is read once from the worker (GET /v1/status), then
// BlockingQueries asks co. It is a QueryLister.
func (co *Coordinator) WorkerQueries(worker *Client) *NodeQueries {
	return &NodeQueries{co: co, nodeID: worker.NodeID}
}

// NodeQueries lists one node's blocking queries; see WorkerQueries.
type NodeQueries struct {
	co     *Coordinator
	nodeID func(context.Context) (string, error)
	id     atomic.Pointer[string] // the node id, once read
}

// BlockingQueries lists the queries with unfinished tasks on the node.
func (n *NodeQueries) BlockingQueries(ctx context.Context) ([]Query, error) {
	id := n.id.Load()
	if id == nil {
		got, err := n.nodeID(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the worker's node id: %w", err)
		}
		n.id.Store(&got)
		id = &got
	}
	return n.co.BlockingQueries(ctx, *id)
}
