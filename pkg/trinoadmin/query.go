package trinoadmin

import "time"

// Query is a query that still has tasks on a worker, as the coordinator
// lists it (Coordinator.BlockingQueries).
type Query struct {
	ID, User, Source, State string
	Created                 time.Time
	Elapsed                 time.Duration
}
