# Sourced by the scripts that test a nested module (hack/e2e.sh,
# hack/conformance.sh).
#
# tidy_if_stale NAME DIR, run inside DIR: each nested module replaces ours
# with a relative path, so raising a requirement in the root go.mod leaves
# its go.mod behind; say what to do instead of go's terse "updates to go.mod
# needed", and tidy it for this run.
tidy_if_stale() {
  if ! go mod tidy -diff >/dev/null 2>&1; then
    echo "$1: warning: $2/go.mod is stale (the root go.mod changed);" >&2
    echo "$1: tidying it for this run; commit the result: (cd $2 && go mod tidy)" >&2
    go mod tidy
  fi
}
