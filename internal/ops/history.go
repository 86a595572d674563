package ops

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/scaledownd/scaledownd/internal/drainreport"
	"github.com/scaledownd/scaledownd/internal/statefile"
)

// History prints the drain reports kept in the state directory, newest
// first: one line each, or with asJSON the whole reports as a JSON array.
func History(w io.Writer, stateDir string, asJSON bool) error {
	entries, err := statefile.ReadHistory(stateDir)
	if err != nil {
		return err
	}
	reports := make([]drainreport.Report, 0, len(entries))
	for _, e := range entries {
		reports = append(reports, e.Report)
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	if len(reports) == 0 {
		fmt.Fprintf(w, "no drain reports in %s yet\n", stateDir)
		return nil
	}
	for _, r := range reports {
		fmt.Fprintln(w, r.Line())
	}
	return nil
}
