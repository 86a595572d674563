// Package testpeers provides wire-level fakes of the services scaledownd talks
// to: Amazon SQS (AWS JSON 1.0), EC2 Auto Scaling (AWS Query with XML
// responses), the EC2 instance metadata service (IMDSv2) and a Trino worker's
// HTTP API. Each fake is an HTTP server on loopback that the daemon reaches
// through its real clients (aws-sdk-go-v2, net/http), so tests exercise the
// same bytes on the wire as production. The same peers serve the unit and
// integration tests, `make demo`, the chaos matrix and the benchmarks.
package testpeers
