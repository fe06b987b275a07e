package sink

import "time"

// SetAuthFailureDelay shortens the wait after a failed login for a test.
func SetAuthFailureDelay(d time.Duration) (restore func()) {
	old := authFailureDelay
	authFailureDelay = d
	return func() { authFailureDelay = old }
}
