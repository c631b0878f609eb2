package schedule

import "time"

// The commit times the stream carries are the server's clock; staleness,
// the arrival lag and the staleness targets compare them with the
// daemon's. The skew between the two (Options.ClockSkew) puts them on the
// daemon's clock, so that a server clock a few seconds off is not a few
// seconds of staleness (or none) on every view.

// onDaemonClock moves a server commit time to the daemon's clock; a zero
// time (unknown) stays zero.
func onDaemonClock(commit time.Time, skew time.Duration) time.Time {
	if commit.IsZero() {
		return commit
	}
	return commit.Add(skew)
}
