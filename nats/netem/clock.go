package netem

import "time"

// goClock sleeps with Go timers (millisecond precision when idle).
type goClock struct{}

func (goClock) now() time.Time         { return time.Now() }
func (goClock) sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }
func (goClock) close()                 {}
