package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/serverfirst/kubectl-serverfirst/report"
)

func newExplainCommand(streams genericiooptions.IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "explain [VERDICT|SCENARIO]",
		Short: "Explain a verdict or scenario: the why, the evidence, the fixes",
		Long: "Explain a verdict (" + strings.Join(report.Topics()[:len(report.Verdicts)], ", ") + ")\nor a scenario (" +
			strings.Join(report.Topics()[len(report.Verdicts):], ", ") + ") in plain words.\nWithout an argument, explain every one.",
		Example:   "  kubectl serverfirst explain DEADLOCK\n  kubectl serverfirst explain external-to-mesh",
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: report.Topics(),
		RunE: func(cmd *cobra.Command, args []string) error {
			topics := args
			if len(topics) == 0 {
				topics = report.Topics()
			}
			for i, t := range topics {
				text, err := report.Explain(t)
				if err != nil {
					return err
				}
				if i > 0 {
					fmt.Fprintln(streams.Out)
				}
				fmt.Fprint(streams.Out, text)
			}
			return nil
		},
	}
}
