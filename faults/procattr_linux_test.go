package faults_test

import "syscall"

// writerAttr makes the kernel kill a writer process when the test process
// dies, so that a test killed by its timeout leaves no writer behind.
func writerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
