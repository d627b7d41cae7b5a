package main

import (
	"os"
	"strconv"
	"testing"
)

// Bad input ends with a usage exit code, before anything is installed or
// any privilege is dropped.
func TestRunRejectsBadInput(t *testing.T) {
	self := []string{"--uid", itoa(os.Geteuid()), "--gid", itoa(os.Getegid()), "--capture=false", "--status-addr=-"}
	tests := []struct {
		name string
		args []string
		want int
	}{
		{name: "unknown flag", args: []string{"--bogus"}, want: 2},
		{name: "bad capture mode", args: []string{"--capture=maybe"}, want: 2},
		{name: "no pod identity", args: append(self, "--inventory", "/nonexistent.json", "--pod-namespace=", "--pod-name=", "--pod-ip="), want: 1},
		{name: "bad pod IP", args: append(self, "--inventory", "/nonexistent.json", "--pod-namespace=a", "--pod-name=b", "--pod-ip=10.1"), want: 1},
	}
	for _, tc := range tests {
		if got := run(tc.args); got != tc.want {
			t.Errorf("%s: exit %d, want %d", tc.name, got, tc.want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
