//go:build !linux

package netem

func newClock() clock { return goClock{} }
