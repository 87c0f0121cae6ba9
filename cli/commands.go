package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/topology"
)

func validateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check topology files and report every error as file:line:col",
		Long: `Compile topology files without touching Kafka: YAML syntax, unknown or
misspelled fields, unknown pipe types, dataset producers, cycles, schemas and
expressions. Every error is printed as file:line:col: message.
Exit code 3 if any file has errors.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bad := 0
			for _, f := range args {
				t, err := g.load(f)
				if err != nil {
					if _, ok := err.(*topology.Error); ok {
						fmt.Fprintln(g.stderr, err)
						bad++
						continue
					}
					return err
				}
				fmt.Fprintf(g.stdout, "%s: ok (%d pipes, %d datasets)\n", f, len(t.Pipes), len(t.Datasets))
			}
			if bad > 0 {
				return &exitError{code: ExitInvalid, err: fmt.Errorf("%d of %d files have errors", bad, len(args))}
			}
			return nil
		},
	}
}

func planCmd(g *globals) *cobra.Command {
	var format, replica string
	c := &cobra.Command{
		Use:   "plan FILE",
		Short: "Print the compiled DAG, consumer group, transactional id and topics",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains(topology.PlanFormats, format) {
				return usageError{fmt.Errorf("--format must be one of %s", strings.Join(topology.PlanFormats, ", "))}
			}
			t, err := g.load(args[0])
			if err != nil {
				return err
			}
			return t.WritePlan(g.stdout, format, replica)
		},
	}
	c.Flags().StringVar(&format, "format", "text", "output format: text, dot or mermaid")
	c.Flags().StringVar(&replica, "replica-id", env("STREAMER_REPLICA_ID", "<replica>"), "replica id shown in the transactional id")
	return c
}

func schemaCmd(g *globals) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of topology files (for editors)",
		Long: `Print the JSON Schema of the topology format, generated from the config
specs of every registered pipe type. Point your editor's YAML language server
at it, e.g. with a first line of:
  # yaml-language-server: $schema=./topology.schema.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := json.MarshalIndent(topology.JSONSchema(), "", "  ")
			if err != nil {
				return err
			}
			b = append(b, '\n')
			if out != "" {
				return os.WriteFile(out, b, 0o644)
			}
			_, err = g.stdout.Write(b)
			return err
		},
	}
	c.Flags().StringVarP(&out, "output", "o", "", "write to this file instead of stdout")
	return c
}

func pipesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "pipes [TYPE]",
		Short: "List pipe types, or describe one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				for _, t := range pipes.Types() {
					fmt.Fprintf(g.stdout, "%-10s %s\n", t.Name, t.Spec.Summary)
				}
				return nil
			}
			t, ok := pipes.Lookup(args[0])
			if why := pipes.NotLinked(args[0]); !ok && why != "" {
				return usageError{fmt.Errorf("%s", why)}
			}
			if !ok {
				return usageError{fmt.Errorf("unknown pipe type %q (have %s)", args[0], strings.Join(pipes.TypeNames(), ", "))}
			}
			fmt.Fprintf(g.stdout, "%s: %s\n\nconfig:\n%s", t.Name, t.Spec.Summary, t.Reference())
			if t.Spec.Example != "" {
				fmt.Fprintf(g.stdout, "\nexample:\n  %s:\n    %s\n", t.Name, strings.ReplaceAll(t.Spec.Example, "\n", "\n    "))
			}
			return nil
		},
	}
}
