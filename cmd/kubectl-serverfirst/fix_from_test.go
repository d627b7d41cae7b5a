package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// specs is every object of the kinds fixes write, decoded.
func specs(t *testing.T, dyn dynamic.Interface) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, gvr := range testenv.FixKinds {
		list, err := dyn.Resource(gvr).Namespace("").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range list.Items {
			out[gvr.Resource+" "+u.GetNamespace()+"/"+u.GetName()] = u.Object
		}
	}
	return out
}

func resourceKey(o report.PlannedObject) string {
	gvr, _ := meta.UnsafeGuessKindToResource(schema.FromAPIVersionAndKind(o.APIVersion, o.Kind))
	return gvr.Resource + " " + o.Namespace + "/" + o.Name
}

// withChanges is an object's spec with the planned changes' fields set: what
// a server-side apply of the plan may change, and nothing else.
func withChanges(t *testing.T, obj map[string]any, o report.PlannedObject) any {
	t.Helper()
	u := (&unstructured.Unstructured{Object: obj}).DeepCopy()
	spec := u.Object["spec"].(map[string]any)
	for _, c := range o.Changes {
		var entry map[string]any
		switch c.Kind {
		case "PeerAuthentication":
			pl, _ := spec["portLevelMtls"].(map[string]any)
			if pl == nil {
				pl = map[string]any{}
				spec["portLevelMtls"] = pl
			}
			if pl[c.Port] == nil {
				pl[c.Port] = map[string]any{}
			}
			entry = pl[c.Port].(map[string]any)
		default:
			for _, p := range spec["ports"].([]any) {
				m := p.(map[string]any)
				id := strconv.FormatInt(toInt(m["number"]), 10)
				if c.Kind == "Service" {
					id = strconv.FormatInt(toInt(m["port"]), 10) + "/" + m["protocol"].(string)
				}
				if id == c.Port {
					entry = m
				}
			}
		}
		if entry == nil {
			t.Fatalf("%s: no entry %s", o.Ref(), c.Port)
		}
		for k, v := range c.Set {
			entry[k] = v
		}
		if len(c.Addresses) > 0 {
			spec["addresses"] = append([]any{}, stringsToAny(c.Addresses)...)
		}
	}
	return u.Object["spec"]
}

func toInt(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	}
	return -1
}

func stringsToAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// TestFixFromReport: a saved report plans as the live scan does, applies
// exactly the fields its fixes name, skips a fix whose object changed since,
// and fix --undo puts every spec back byte for byte.
func TestFixFromReport(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{})
	seedShop(t, env)
	kc := env.Kubeconfig
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	record, saved := filepath.Join(dir, "fix.json"), filepath.Join(dir, "report.json")
	scope := []string{"-A", "--static", "--external", "relay.example.net:25", "--kubeconfig", kc}
	js, _, err := run(t, "", append([]string{"scan", "-o", "json"}, scope...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(saved, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	before := objectState(t, dyn)
	beforeSpecs := specs(t, dyn)

	t.Run("the saved report plans as the scan does", func(t *testing.T) {
		for _, all := range [][]string{nil, {"--all"}} {
			live, _, err := run(t, "", append(append([]string{"fix"}, scope...), all...)...)
			if err != nil {
				t.Fatal(err)
			}
			fromFile, _, err := run(t, "", append([]string{"fix", "--from", saved}, all...)...)
			if err != nil {
				t.Fatal(err)
			}
			fromStdin, _, err := run(t, js, append([]string{"fix", "--from", "-"}, all...)...)
			if err != nil {
				t.Fatal(err)
			}
			if fromFile != live || fromStdin != live {
				t.Errorf("fix --from %v differs from fix:\n%s\nwant\n%s", all, fromFile, live)
			}
		}
	})

	r, err := report.ReadReport([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	plan := report.Plan(r)

	t.Run("apply changes exactly the fields the fixes name; undo restores them", func(t *testing.T) {
		_, errOut, err := run(t, "", "fix", "--from", saved, "--apply", "--yes", "--no-verify", "--allow-plaintext", "--record", record, "--kubeconfig", kc)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		if strings.Contains(errOut, "skipping") || strings.Contains(errOut, "not verified") {
			t.Errorf("stderr:\n%s", errOut)
		}
		after := specs(t, dyn)
		planned := map[string]report.PlannedObject{}
		for _, o := range plan.Objects {
			planned[resourceKey(o)] = o
		}
		created := 0
		for k, obj := range after {
			o, ok := planned[k]
			prev, existed := beforeSpecs[k]
			switch {
			case !existed && (!ok || !o.Create):
				t.Errorf("%s created, but no fix creates it", k)
			case !existed:
				created++
				if (&unstructured.Unstructured{Object: obj}).GetLabels()[report.ManagedByLabel] != report.ManagerName {
					t.Errorf("%s created without the managed-by label", k)
				}
			case !ok && !reflect.DeepEqual(obj["spec"], prev["spec"]):
				t.Errorf("%s changed, but no fix changes it", k)
			case ok:
				if want := withChanges(t, prev, o); !reflect.DeepEqual(obj["spec"], want) {
					got, _ := yaml.Marshal(obj["spec"])
					w, _ := yaml.Marshal(want)
					t.Errorf("%s: spec after the fix\n%s\nwant (the scan's spec with the fixes' fields)\n%s", k, got, w)
				}
			}
		}
		t.Logf("%d objects planned, %d of them created", len(plan.Objects), created)
		if created == 0 || len(plan.Objects) < 4 {
			t.Errorf("%d objects created, %d planned: the test covers too little", created, len(plan.Objects))
		}

		if _, errOut, err := run(t, "", "fix", "--undo", "--yes", "--record", record, "--kubeconfig", kc); err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		diffStates(t, before, objectState(t, dyn))
	})

	t.Run("a fix to an object changed since the report is skipped", func(t *testing.T) {
		ctx := context.Background()
		edit := func(appProtocol *string) {
			svc, err := env.Client.CoreV1().Services("shop").Get(ctx, "orders-db", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			svc.Spec.Ports[0].AppProtocol = appProtocol
			if _, err := env.Client.CoreV1().Services("shop").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		byHand := "mysql-by-hand"
		edit(&byHand)
		edited := specs(t, dyn)["services shop/orders-db"]
		_, errOut, err := run(t, "", "fix", "--from", saved, "--apply", "--yes", "--no-verify", "--record", record, "--kubeconfig", kc)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		want := `skipping the fix to Service shop/orders-db: port 3307/TCP appProtocol is "mysql-by-hand" now, the report saw ""`
		if !strings.Contains(errOut, want) || strings.Count(errOut, "skipping the fix") != 1 {
			t.Errorf("stderr does not say the one fix is skipped (%s):\n%s", want, errOut)
		}
		if got := specs(t, dyn)["services shop/orders-db"]; !reflect.DeepEqual(got["spec"], edited["spec"]) {
			t.Errorf("the skipped fix changed the object: %v", got["spec"])
		}
		if _, errOut, err := run(t, "", "fix", "--undo", "--yes", "--record", record, "--kubeconfig", kc); err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		edit(nil)
		diffStates(t, before, objectState(t, dyn))
	})

	t.Run("what is not a report is refused in one line", func(t *testing.T) {
		notReport := filepath.Join(dir, "service.yaml")
		if err := os.WriteFile(notReport, []byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		newer := filepath.Join(dir, "newer.json")
		if err := os.WriteFile(newer, []byte(strings.Replace(js, `"schemaVersion": 1`, `"schemaVersion": 2`, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ file, want string }{
			{notReport, "not a kubectl-serverfirst report"},
			{newer, "report schema 2 is newer than this kubectl-serverfirst reads (1)"},
			{filepath.Join(dir, "missing.json"), "no such file"},
		} {
			_, _, err := run(t, "", "fix", "--from", c.file, "--apply", "--yes", "--kubeconfig", kc)
			if exitCode(err) != 1 || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("--from %s: exit %d, %v; want one line with %q", filepath.Base(c.file), exitCode(err), err, c.want)
			}
		}
		diffStates(t, before, objectState(t, dyn))
	})
}
