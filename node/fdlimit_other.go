//go:build !unix

package node

import "errors"

// raiseFDLimit knows no descriptor limit outside Unix.
func raiseFDLimit() (soft, hard uint64, err error) {
	return 0, 0, errors.New("no RLIMIT_NOFILE on this system")
}
