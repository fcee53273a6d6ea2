package netem

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// timerClock sleeps on a timerfd read through Go's poller: it wakes within
// microseconds, where a Go timer in an idle process wakes a millisecond
// late at best (the poller's sleep is rounded up to whole milliseconds).
type timerClock struct {
	fd   int
	file *os.File // nil when no timerfd could be made: fall back to Go timers
	buf  [8]byte
}

func newClock() clock {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return goClock{}
	}
	return &timerClock{fd: fd, file: os.NewFile(uintptr(fd), "netem-timerfd")}
}

func (c *timerClock) now() time.Time { return time.Now() }

func (c *timerClock) sleepUntil(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(d.Nanoseconds())}
	if err := unix.TimerfdSettime(c.fd, 0, &spec, nil); err != nil {
		time.Sleep(d)
		return
	}
	if _, err := c.file.Read(c.buf[:]); err != nil {
		time.Sleep(time.Until(t))
	}
}

func (c *timerClock) close() { c.file.Close() }
