// Package vantage runs probes from the places that prove a deadlock in a
// live cluster: short-lived probe pods with and without a sidecar (mesh
// client, outside client), a port-forward to a backing pod (the direct
// path, which enters the pod over loopback and so bypasses its sidecar),
// and an ephemeral container in an existing client pod (--from-pod). It
// also plans and runs the probes made from where the tool itself runs
// (PlanSelfProbes, RunSelf). Every dial a scan makes is planned here; the
// probe pods' agent (the agent command) only runs the targets it is given.
//
// Every object it creates is labelled, meets the PodSecurity "restricted"
// standard, and is deleted on success, on error and on cancellation.
//
// Results come back as target.Observation values for report to judge.
package vantage
