package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

type fixFlags struct {
	scanFlags
	all            bool
	apply          bool
	yes            bool
	allowPlaintext bool
	noVerify       bool
	verifyTimeout  time.Duration
	record         string
	undo           bool
	from           string
}

const fixExample = `  # Print the fixes for my namespace and apply them with kubectl:
  kubectl serverfirst fix | kubectl apply -f -

  # Every alternative too, as comments:
  kubectl serverfirst fix -A --all

  # Apply with server-side apply (dry-run first, then asks), then probe
  # the affected paths again until the fixes took:
  kubectl serverfirst fix -n shop --apply

  # Unattended, including fixes that disable mTLS on a port for clients without sidecars:
  kubectl serverfirst fix -n shop --apply --yes --allow-plaintext

  # Put back what the last fix --apply changed (dry-run first, then asks):
  kubectl serverfirst fix --undo

  # Apply the fixes of a report saved earlier (or in CI), without scanning:
  kubectl serverfirst scan -n shop -o json > report.json
  kubectl serverfirst fix --from report.json --apply`

func newFixCommand(root *rootOptions) *cobra.Command {
	f := &fixFlags{}
	cmd := &cobra.Command{
		Use:   "fix [flags]",
		Short: "Print (or apply, verify and undo) the best fix for every affected port as YAML",
		Long: `Scan like "scan" does (its flags are scan's: "scan --help" tells them in full),
then print the best fix for every affected port as one multi-document YAML
stream, ready for "kubectl apply -f -". Fixes to the same object are merged into
one document; every document repeats the object's whole ports list, so applying
it never drops a port or undoes an earlier fix.

Which fix, by scenario:
  mesh-to-mesh      appProtocol: tcp on the Service port (or a tcp- name prefix,
                    or the well-known port, or TLS on the server)
  mesh-to-external  a ServiceEntry with protocol TCP for the host and port
  external-to-mesh  a PeerAuthentication with portLevelMtls DISABLE on the
                    workload's port (plaintext: needs --allow-plaintext to apply)

--apply uses server-side apply (field manager "kubectl-serverfirst"): a dry
run of every object first, then a confirmation unless --yes. Nothing is changed
without --apply. Re-running after a successful fix finds nothing to do.

Then it verifies: the mesh takes a change in a second or a minute (istiod
pushes, every proxy reloads), so it probes exactly the paths the applied
fixes repair again, from the scan's own vantages (the direct path is not
probed again: no fix changes what the server sends), with backoff, until
each passes or --verify-timeout ends, and prints per path what the probe saw
before and after ("mesh-client silent -> banner 1.8ms"). A path nothing
probed (a static scan, a target no vantage reaches) is judged again from the
objects, and says so. --no-verify stops after applying.

Every object it applies is recorded first (the object as it was, or that it
did not exist; the field manager) in a record file: --record FILE, by
default $XDG_STATE_HOME/kubectl-serverfirst/fix-records.json (else
~/.local/state/...). A file, not a ConfigMap in the cluster: it needs no
right beyond the fix's own, it survives the objects and the namespace, and
you can keep it (it is JSON, readable by you only). --undo puts back what the
last recorded --apply changed, through the same dry run and confirmation:
the specs, labels and annotations as they were, byte for byte, and deletes
the objects the fix created; it refuses objects that changed since.

--from FILE (- for stdin) plans the fixes of a saved "scan -o json" (or -o
yaml) report instead of scanning; the scan flags are then not used. Every
fix in the report says what it changes, so the plan is the one a scan
would print. With --apply it first reads every object the plan changes
and skips, with a warning, each fix whose object changed since the report
where the fix acts (the field it sets holds neither what the report saw
nor the fix's value, the object was deleted or created, or the ports and
selector the manifest repeats differ); then dry run, confirmation, record
and apply as above. It does not verify: the report's probes ran where the
report was made, with vantages this command may not have. It says so and
exits as --no-verify would; scan again to see the fixes take.

Exit status: 0 when the scan ran (and, with --apply, every applied fix
verified); 4 when some applied fix did not take by --verify-timeout (the
lines say which, and what is still in the way); 1 on errors; 130 on Ctrl-C.`,
		Example: fixExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.undo {
				if f.apply || f.from != "" {
					return errors.New("--undo and --apply or --from: give one")
				}
				return undoFix(cmd.Context(), root, f)
			}
			if f.from == "-" && f.apply && !f.yes {
				return errors.New("--from - --apply needs --yes: standard input holds the report, not the answer")
			}
			if f.from != "" {
				return fixFrom(cmd.Context(), root, f)
			}
			cfg, err := f.config(root, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			scanned, err := newLiveScan(root, cfg)
			if err != nil {
				return err
			}
			res, err := scanned.run(cmd.Context())
			if err != nil {
				return err
			}
			r := res.Report
			plan := report.Plan(r)
			if err := report.RenderPlan(root.streams.Out, plan, f.all); err != nil {
				return err
			}
			if !f.apply {
				return nil
			}
			applied, err := applyPlan(cmd.Context(), root, f, plan)
			if err != nil || len(applied) == 0 || f.noVerify {
				return err
			}
			return verifyFix(cmd.Context(), scanned, r, res.Observations, applied, f.verifyTimeout, time.Now(), root.streams.ErrOut)
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&f.all, "all", false, "Also print every alternative fix, as comments")
	fl.BoolVar(&f.apply, "apply", false, "Apply the fixes with server-side apply, record them, then verify them (see above)")
	fl.BoolVarP(&f.yes, "yes", "y", false, "With --apply or --undo: do not ask for confirmation")
	fl.BoolVar(&f.allowPlaintext, "allow-plaintext", false, "With --apply: also apply fixes that disable mTLS on a port")
	fl.BoolVar(&f.noVerify, "no-verify", false, "With --apply: stop after applying, without probing again")
	fl.DurationVar(&f.verifyTimeout, "verify-timeout", 60*time.Second, "With --apply: how long to verify before giving up (exit 4)")
	fl.StringVar(&f.record, "record", "", "The fix record `FILE` of --apply and --undo (default $XDG_STATE_HOME/kubectl-serverfirst/fix-records.json)")
	fl.BoolVar(&f.undo, "undo", false, "Put back what the last recorded fix --apply changed; no scan")
	fl.StringVar(&f.from, "from", "", "Plan the fixes of a saved report `FILE` (- for stdin) instead of scanning")
	return cmd
}

func (f *fixFlags) recordPath() (string, error) {
	if f.record != "" {
		return f.record, nil
	}
	return report.DefaultRecordPath()
}

func refOf(o report.PlannedObject) cluster.ObjectRef {
	return cluster.ObjectRef{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}
}

// applier is the typed clientsets (and the raw client for records and
// undo) under the tool's field manager.
func applier(root *rootOptions) (cluster.Applier, string, error) {
	clients, cfg, err := root.clients()
	if err != nil {
		return cluster.Applier{}, "", err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return cluster.Applier{}, "", err
	}
	return cluster.Applier{Clients: clients, Dyn: dyn, FieldManager: report.ManagerName}, cfg.Host, nil
}

// fixFrom plans the fixes of a saved report and, with --apply, applies
// those whose objects did not change since; it does not verify.
func fixFrom(ctx context.Context, root *rootOptions, f *fixFlags) error {
	var data []byte
	var err error
	if f.from == "-" {
		data, err = io.ReadAll(root.streams.In)
	} else {
		data, err = os.ReadFile(f.from)
	}
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	r, err := report.ReadReport(data)
	if err != nil {
		return fmt.Errorf("--from %s: %w", f.from, err)
	}
	plan, err := report.PlanSkipping(r, nil)
	if err != nil {
		return fmt.Errorf("--from %s: %w", f.from, err)
	}
	if f.apply && len(plan.Objects) > 0 {
		ap, _, err := applier(root)
		if err != nil {
			return err
		}
		skip := map[*report.Change]bool{}
		for _, o := range plan.Objects {
			cur, err := ap.Get(ctx, refOf(o))
			if err != nil {
				return fmt.Errorf("reading %s: %w", o.Ref(), err)
			}
			var obj map[string]any
			if cur != nil {
				obj = cur.Object
			}
			drift := o.Drift(obj)
			for _, c := range o.Changes {
				if why, ok := drift[c]; ok {
					skip[c] = true
					fmt.Fprintf(root.streams.ErrOut, "skipping the fix to %s: %s\n", o.Ref(), why)
				}
			}
		}
		if len(skip) > 0 {
			if plan, err = report.PlanSkipping(r, skip); err != nil {
				return err
			}
		}
	}
	if err := report.RenderPlan(root.streams.Out, plan, f.all); err != nil {
		return err
	}
	if !f.apply {
		return nil
	}
	applied, err := applyPlan(ctx, root, f, plan)
	if err != nil || len(applied) == 0 || f.noVerify {
		return err
	}
	fmt.Fprintln(root.streams.ErrOut, "not verified: fix --from does not probe (the report's probes ran where it was made); scan again to see the fixes take")
	return nil
}

// applyPlan dry-runs every object, asks, records, then applies, and
// returns what it applied. An object that weakens security is skipped
// unless --allow-plaintext.
func applyPlan(ctx context.Context, root *rootOptions, f *fixFlags, plan report.FixPlan) ([]report.PlannedObject, error) {
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
		return nil, nil
	}
	// The record file is read before anything changes: a fix that could
	// not be undone is not applied.
	recordPath, err := f.recordPath()
	if err != nil {
		return nil, err
	}
	records, err := report.ReadRecords(recordPath)
	if err != nil {
		return nil, err
	}
	ap, server, err := applier(root)
	if err != nil {
		return nil, err
	}
	for _, o := range todo {
		if _, err := ap.Apply(ctx, o.Object, true); err != nil {
			return nil, fmt.Errorf("dry run of %s failed, nothing applied: %w", o.Ref(), err)
		}
	}
	fmt.Fprintf(errOut, "dry run passed for %d object(s)\n", len(todo))
	if !f.yes {
		ok, err := confirm(root.streams.In, errOut, fmt.Sprintf("Apply %d object(s) with server-side apply? [y/N] ", len(todo)))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errors.New("not applied (answer was not yes)")
		}
	}
	rec := report.FixRecord{AppliedAt: time.Now().UTC(), Server: server, FieldManager: report.ManagerName}
	save := func() error { return report.WriteRecords(recordPath, append(records, rec)) }
	for i, o := range todo {
		prev, err := ap.Get(ctx, refOf(o))
		if err != nil {
			return todo[:i], fmt.Errorf("reading %s before applying it: %w", o.Ref(), err)
		}
		ro := report.RecordedObject{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Created: prev == nil, Applying: true}
		if prev != nil {
			if ro.Previous, err = json.Marshal(prev.Object); err != nil {
				return todo[:i], err
			}
		}
		rec.Objects = append(rec.Objects, ro)
		if err := save(); err != nil {
			return todo[:i], fmt.Errorf("%w: %s not applied", err, o.Ref())
		}
		uid, err := ap.Apply(ctx, o.Object, false)
		if err != nil {
			return todo[:i], fmt.Errorf("applying %s: %w", o.Ref(), err)
		}
		last := &rec.Objects[len(rec.Objects)-1]
		last.Applying, last.UID = false, string(uid)
		// The record keeps the object as stored, read raw: the typed
		// result went through protobuf (see cluster.Applier).
		got, err := ap.Get(ctx, refOf(o))
		if err == nil && got == nil {
			err = errors.New("gone right after the apply")
		}
		if err != nil {
			return todo[:i+1], fmt.Errorf("reading %s after applying it: %w", o.Ref(), err)
		}
		if last.Applied, err = json.Marshal(got.Object); err != nil {
			return todo[:i+1], err
		}
		if err := save(); err != nil {
			return todo[:i+1], err
		}
		fmt.Fprintf(errOut, "%s applied\n", o.Ref())
	}
	fmt.Fprintf(errOut, "recorded in %s (fix --undo puts it back)\n", recordPath)
	return todo, nil
}

// verifyBackoff paces the rounds: the first right after applying (a
// sidecar may have its config already), then slower, as istiod pushes.
var verifyBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.1, Steps: math.MaxInt32, Cap: 8 * time.Second}

// verifyFix probes the applied fixes' paths again with the scan's own
// vantages until each took or the timeout ends, and prints every path
// before -> after. Exit 4 when some did not take.
func verifyFix(ctx context.Context, s *liveScan, before report.Report, beforeObs []target.Observation, applied []report.PlannedObject,
	timeout time.Duration, began time.Time, errOut io.Writer) error {
	paths := report.AppliedPaths(applied)
	reprobe := report.ReprobeFor(paths)
	deadline := began.Add(timeout)
	requests := s.root.requests.Load()
	b := verifyBackoff
	var checks []report.PathCheck
	round, timedOut := 0, false
	var warned []string
	for {
		round++
		after, err := s.reprobe(ctx, reprobe, beforeObs)
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return &exitError{code: 130, err: errors.New("interrupted")}
		}
		checks = report.CheckPaths(paths, before, after)
		// A probe that could not run leaves its path to a static
		// judgement: say why.
		for _, w := range after.Warnings {
			if !slices.Contains(before.Warnings, w) && !slices.Contains(warned, w) {
				warned = append(warned, w)
				fmt.Fprintf(errOut, "verify: warning: %s\n", w)
			}
		}
		if s.cfg.Static() || report.AllSettled(checks) {
			break
		}
		wait := min(b.Step(), time.Until(deadline))
		if wait <= 0 {
			timedOut = true
			break
		}
		waiting := 0
		for _, c := range checks {
			if !c.Settled() {
				waiting++
			}
		}
		fmt.Fprintf(errOut, "verify round %d: %d of %d path(s) do not pass yet; again in %s\n", round, waiting, len(checks), wait.Round(100*time.Millisecond))
		select {
		case <-ctx.Done():
			return &exitError{code: 130, err: errors.New("interrupted")}
		case <-time.After(wait):
		}
	}
	if err := report.RenderChecks(errOut, checks); err != nil {
		return err
	}
	fmt.Fprintf(errOut, "verification: %s from apply, %d round(s), %d API request(s)\n",
		time.Since(began).Round(time.Millisecond), round, s.root.requests.Load()-requests)
	failed := 0
	for _, c := range checks {
		if !c.Took() {
			failed++
		}
	}
	if failed > 0 {
		why := "what is still in the way is config, not a push the mesh has yet to make"
		if timedOut {
			why = fmt.Sprintf("--verify-timeout %s ended", timeout)
		} else if s.cfg.Static() {
			why = "judged from the objects (a static scan)"
		}
		return &exitError{code: 4, err: fmt.Errorf("%d of %d applied path(s) did not take: %s", failed, len(checks), why)}
	}
	return nil
}

// undoFix puts back what the last recorded fix --apply changed: every
// object in reverse order, dry run first, then after confirmation.
func undoFix(ctx context.Context, root *rootOptions, f *fixFlags) error {
	errOut := root.streams.ErrOut
	recordPath, err := f.recordPath()
	if err != nil {
		return err
	}
	records, err := report.ReadRecords(recordPath)
	if err != nil {
		return err
	}
	if len(records) == 0 {
		return fmt.Errorf("nothing to undo: no fix recorded in %s", recordPath)
	}
	rec := records[len(records)-1]
	ap, server, err := applier(root)
	if err != nil {
		return err
	}
	if rec.Server != server {
		return fmt.Errorf("the last fix in %s went to %s, not %s: use the kubeconfig it was applied with", recordPath, rec.Server, server)
	}
	type step struct {
		o          report.RecordedObject
		do         func(dry bool) error
		what, done string
	}
	var steps []step
	for i := len(rec.Objects) - 1; i >= 0; i-- {
		o := rec.Objects[i]
		ref := cluster.ObjectRef{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}
		applied, err := unstructuredOf(o.Applied)
		if err != nil {
			return fmt.Errorf("fix record %s: %s: %w", recordPath, o.Ref(), err)
		}
		if o.Created {
			uid := types.UID(o.UID)
			steps = append(steps, step{o, func(dry bool) error { return ap.DeleteCreated(ctx, ref, uid, applied, dry) }, "delete " + o.Ref() + " (the fix created it)", o.Ref() + " deleted"})
			continue
		}
		prev, err := unstructuredOf(o.Previous)
		if err != nil || prev == nil {
			return fmt.Errorf("fix record %s: %s has no previous object", recordPath, o.Ref())
		}
		steps = append(steps, step{o, func(dry bool) error { return ap.Restore(ctx, ref, prev, applied, dry) }, "restore " + o.Ref() + " as it was before the fix", o.Ref() + " restored"})
	}
	for _, s := range steps {
		if err := s.do(true); err != nil {
			return fmt.Errorf("dry run of the undo failed, nothing changed: %w", err)
		}
		fmt.Fprintf(errOut, "would %s\n", s.what)
	}
	fmt.Fprintf(errOut, "dry run passed for %d object(s) of the fix applied %s\n", len(steps), rec.AppliedAt.Format(time.RFC3339))
	if !f.yes {
		ok, err := confirm(root.streams.In, errOut, fmt.Sprintf("Undo the fix (%d object(s))? [y/N] ", len(steps)))
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("not undone (answer was not yes)")
		}
	}
	for i, s := range steps {
		if err := s.do(false); err != nil {
			// What was undone stays undone; the record keeps the rest.
			rec.Objects = rec.Objects[:len(rec.Objects)-i]
			records[len(records)-1] = rec
			if werr := report.WriteRecords(recordPath, records); werr != nil {
				return errors.Join(err, werr)
			}
			return fmt.Errorf("undo stopped at %s: %w", s.o.Ref(), err)
		}
		fmt.Fprintln(errOut, s.done)
	}
	return report.WriteRecords(recordPath, records[:len(records)-1])
}

func unstructuredOf(raw json.RawMessage) (*unstructured.Unstructured, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	return u, nil
}

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
