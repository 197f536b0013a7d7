//go:build unix

package node

import "syscall"

// raiseFDLimit raises the soft RLIMIT_NOFILE to the hard limit where the
// system allows it (the Go runtime does so at start-up on most systems,
// but a parent may have lowered it since) and returns the limits then in
// force.
func raiseFDLimit() (soft, hard uint64, err error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, 0, err
	}
	if l.Cur < l.Max {
		want := l
		want.Cur = want.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			l = want
		}
	}
	return uint64(l.Cur), uint64(l.Max), nil
}
