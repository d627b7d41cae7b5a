package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/serverfirst/kubectl-serverfirst/report"
)

type fixFlags struct {
	scanFlags
	all            bool
	apply          bool
	yes            bool
	allowPlaintext bool
}

const fixExample = `  # Print the fixes for my namespace and apply them with kubectl:
  kubectl serverfirst fix | kubectl apply -f -

  # Every alternative too, as comments:
  kubectl serverfirst fix -A --all

  # Apply with server-side apply (dry-run first, then asks):
  kubectl serverfirst fix -n shop --apply

  # Unattended, including fixes that disable mTLS on a port for clients without sidecars:
  kubectl serverfirst fix -n shop --apply --yes --allow-plaintext`

func newFixCommand(root *rootOptions) *cobra.Command {
	f := &fixFlags{}
	cmd := &cobra.Command{
		Use:   "fix [flags]",
		Short: "Print (or apply) the best fix for every affected port as YAML",
		Long: `Scan like "scan" does, then print the best fix for every affected port as one
multi-document YAML stream, ready for "kubectl apply -f -". Fixes to the same
object are merged into one document; every document repeats the object's whole
ports list, so applying it never drops a port or undoes an earlier fix.

Which fix, by scenario:
  mesh-to-mesh      appProtocol: tcp on the Service port (or a tcp- name prefix,
                    or the well-known port, or TLS on the server)
  mesh-to-external  a ServiceEntry with protocol TCP for the host and port
  external-to-mesh  a PeerAuthentication with portLevelMtls DISABLE on the
                    workload's port (plaintext: needs --allow-plaintext to apply)

--apply uses server-side apply (field manager "kubectl-serverfirst"): a dry
run of every object first, then a confirmation unless --yes. Nothing is changed
without --apply. Re-running after a successful fix finds nothing to do.`,
		Example: fixExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := runScan(cmd.Context(), root, &f.scanFlags, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			plan := report.Plan(r)
			if err := report.RenderPlan(root.streams.Out, plan, f.all); err != nil {
				return err
			}
			if !f.apply {
				return nil
			}
			return applyPlan(cmd.Context(), root, f, plan)
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&f.all, "all", false, "Also print every alternative fix, as comments")
	fl.BoolVar(&f.apply, "apply", false, "Apply the fixes with server-side apply (dry-run first; asks unless --yes)")
	fl.BoolVarP(&f.yes, "yes", "y", false, "With --apply: do not ask for confirmation")
	fl.BoolVar(&f.allowPlaintext, "allow-plaintext", false, "With --apply: also apply fixes that disable mTLS on a port (PeerAuthentication DISABLE)")
	return cmd
}

// resources maps the kinds fixes produce to their API resources.
var resources = map[string]schema.GroupVersionResource{
	"v1/Service":                              {Version: "v1", Resource: "services"},
	"networking.istio.io/v1/ServiceEntry":     {Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"},
	"networking.istio.io/v1/DestinationRule":  {Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"},
	"security.istio.io/v1/PeerAuthentication": {Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"},
}

// applyPlan dry-runs every object, asks, then applies. An object that
// weakens security is skipped unless --allow-plaintext.
func applyPlan(ctx context.Context, root *rootOptions, f *fixFlags, plan report.FixPlan) error {
	errOut := root.streams.ErrOut
	var todo []report.PlannedObject
	for _, o := range plan.Objects {
		if o.WeakensSecurity && !f.allowPlaintext {
			fmt.Fprintf(errOut, "skipping %s: it disables mTLS on a port (plaintext for every client); pass --allow-plaintext to apply it\n", o.Ref())
			continue
		}
		todo = append(todo, o)
	}
	if len(todo) == 0 {
		fmt.Fprintln(errOut, "nothing to apply")
		return nil
	}
	_, cfg, err := root.clients()
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, o := range todo {
		if err := applyObject(ctx, dyn, o, true); err != nil {
			return fmt.Errorf("dry run of %s failed, nothing applied: %w", o.Ref(), err)
		}
	}
	fmt.Fprintf(errOut, "dry run passed for %d object(s)\n", len(todo))
	if !f.yes {
		ok, err := confirm(root.streams.In, errOut, fmt.Sprintf("Apply %d object(s) with server-side apply? [y/N] ", len(todo)))
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("not applied (answer was not yes)")
		}
	}
	for _, o := range todo {
		if err := applyObject(ctx, dyn, o, false); err != nil {
			return fmt.Errorf("applying %s: %w", o.Ref(), err)
		}
		fmt.Fprintf(errOut, "%s applied\n", o.Ref())
	}
	return nil
}

func applyObject(ctx context.Context, dyn dynamic.Interface, o report.PlannedObject, dryRun bool) error {
	gvr, ok := resources[o.APIVersion+"/"+o.Kind]
	if !ok {
		return fmt.Errorf("no API resource known for %s %s", o.APIVersion, o.Kind)
	}
	body, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{FieldManager: report.ManagerName, Force: ptrTo(true)}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = dyn.Resource(gvr).Namespace(o.Namespace).Patch(ctx, o.Name, types.ApplyPatchType, body, opts)
	return err
}

func ptrTo[T any](v T) *T { return &v }

// confirm asks on errOut and reads one line; anything but y/yes is no,
// and so is end of input (no terminal, no --yes).
func confirm(in io.Reader, errOut io.Writer, question string) (bool, error) {
	fmt.Fprint(errOut, question)
	if in == nil {
		return false, nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}
