package testenv

import "syscall"

// sysProcAttr puts each child in its own process group (so stop can signal
// the group) and asks the kernel to SIGKILL it if the thread that started it
// dies, so a test binary killed by `go test -timeout` leaves no etcd or
// kube-apiserver behind. Pdeathsig follows the starting OS thread, which the
// Go runtime keeps alive for the life of the process in practice.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
