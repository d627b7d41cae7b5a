package testenv

import (
	"context"
	"errors"
	"os"
	"testing"
)

// StartForTest starts an Env for t and stops it in t.Cleanup, whether the
// test passes or fails. Missing binaries skip the test with a hint, except
// under CI=true, where they fail it: CI must never pass by skipping.
func StartForTest(t testing.TB, opts Options) *Env {
	t.Helper()
	env, err := Start(context.Background(), opts)
	if errors.Is(err, ErrBinariesMissing) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("testenv: %v", err)
		}
		t.Skipf("testenv: %v", err)
	}
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: last lines of kube-apiserver.log:\n%s", env.LogTail("apiserver", 20))
		}
		if err := env.Stop(); err != nil {
			t.Errorf("testenv: stop: %v", err)
		}
	})
	t.Logf("testenv: API server %s ready in %v", env.Host, env.StartupTime.Round(1e6))
	return env
}
