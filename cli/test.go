package cli

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/spf13/cobra"

	"github.com/streamerio/streamer/streamertest"
)

func testCmd(g *globals) *cobra.Command {
	var update, reference bool
	var junit, run string
	c := &cobra.Command{
		Use:   "test [FILES|DIRS]...",
		Short: "Run topology test cases in-process, without a broker",
		Long: `Run the cases of test files (*.test.yaml; directories are searched) against
their topologies, in-process. Records go through the same compiled plan and
pipe code as in production; only Kafka is replaced.

A test file names its topology and lists cases: input records per source
dataset, and the expected records per sink dataset and dead letters.
--update rewrites, in place, the expectations that failed with what the
topology produced, for review in version control, and lists what it rewrote:
comments and layout elsewhere stay as written, a match: partial case keeps
only the fields it gave, and a dead letter keeps its error: substring while it
still matches. --reference prints the test-file format.

A file whose topology needs custom pipe types (requires: [name, ...]) that
this binary lacks is skipped, with the reason; run it with the binary that
registers them.

Exit codes: 0 all passed (or skipped), 4 a case failed, 3 a test file or
topology is invalid.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if reference {
				fmt.Fprint(g.stdout, streamertest.Reference())
				return nil
			}
			if len(args) == 0 {
				args = []string{"."}
			}
			opts := streamertest.Options{Update: update}
			if run != "" {
				re, err := regexp.Compile(run)
				if err != nil {
					return usageError{fmt.Errorf("--run: %w", err)}
				}
				opts.Run = re
			}
			files, err := streamertest.Find(args)
			if err != nil {
				return usageError{err}
			}
			if len(files) == 0 {
				return usageError{fmt.Errorf("no %s files in %v", streamertest.Suffix, args)}
			}
			var results []streamertest.FileResult
			passed, failed, invalid, skipped := 0, 0, 0, 0
			for _, f := range files {
				start := time.Now()
				r := streamertest.RunFile(f, opts)
				results = append(results, r)
				if r.Err != nil {
					invalid++
					fmt.Fprintf(g.stdout, "INVALID %s\n%s\n", f, r.Err)
					continue
				}
				if r.Skipped != "" {
					skipped += len(r.Cases)
					fmt.Fprintf(g.stdout, "SKIP %s\t%d cases\t%s\n", f, len(r.Cases), r.Skipped)
					continue
				}
				fileFailed := 0
				for _, c := range r.Cases {
					if c.Passed() {
						passed++
						continue
					}
					failed++
					fileFailed++
					fmt.Fprintf(g.stdout, "--- FAIL: %s (%s:%d:%d)\n", c.Name, f, c.Line, c.Col)
					for _, msg := range c.Failures {
						fmt.Fprintf(g.stdout, "    %s\n", msg)
					}
				}
				status := "ok  "
				if fileFailed > 0 {
					status = "FAIL"
				}
				note := ""
				if r.Updated {
					note = " (expectations updated)"
				}
				fmt.Fprintf(g.stdout, "%s %s\t%d cases\t%s%s\n", status, f, len(r.Cases), time.Since(start).Round(time.Microsecond), note)
				for _, w := range r.Rewrote {
					fmt.Fprintf(g.stdout, "    updated %s\n", w)
				}
			}
			if skipped > 0 {
				fmt.Fprintf(g.stdout, "%d passed, %d failed, %d skipped\n", passed, failed, skipped)
			} else {
				fmt.Fprintf(g.stdout, "%d passed, %d failed\n", passed, failed)
			}
			if junit != "" {
				out, err := os.Create(junit)
				if err != nil {
					return err
				}
				err = errors.Join(streamertest.WriteJUnit(out, results), out.Close())
				if err != nil {
					return err
				}
			}
			switch {
			case invalid > 0:
				return &exitError{code: ExitInvalid, err: fmt.Errorf("%d test files are invalid", invalid)}
			case failed > 0 && !update:
				return &exitError{code: ExitTestFail, err: fmt.Errorf("%d of %d cases failed", failed, passed+failed)}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&update, "update", false, "rewrite expectations with the actual outputs (golden mode)")
	c.Flags().StringVar(&junit, "junit", "", "also write a JUnit XML report to this file")
	c.Flags().BoolVar(&reference, "reference", false, "print the reference of the test-file format and exit")
	c.Flags().StringVar(&run, "run", "", "run only the cases whose name matches this regular expression")
	return c
}
