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
		Use:   "explain [VERDICT|SCENARIO|CODE]",
		Short: "Explain a verdict, scenario or rule code: the why, the evidence, the fixes",
		Long: "Explain a verdict (" + strings.Join(report.Topics()[:len(report.Verdicts)], ", ") + ")\nor a scenario (" +
			strings.Join(report.Topics()[len(report.Verdicts):], ", ") + ") in plain words,\nor the rule behind a finding's \"code\" (SF0401 ...: the README lists them).\nWithout an argument, explain every verdict and scenario.",
		Example:   "  kubectl serverfirst explain DEADLOCK\n  kubectl serverfirst explain external-to-mesh\n  kubectl serverfirst explain SF0401",
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: append(report.Topics(), report.RuleCodes()...),
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
