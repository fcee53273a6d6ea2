package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
)

// PopularSubjectPrefix starts the core NATS subjects of the live lobby
// lists: gamemodes.popular.<REGION> (topology.PopularSubjectPrefix and a dot).
const PopularSubjectPrefix = topology.PopularSubjectPrefix + "."

// VersionHeader is the header of a live lobby list message carrying its
// version: a decimal number that increases with every list of the region
// (topology.HeaderPopularVersion).
const VersionHeader = topology.HeaderPopularVersion

// PopularSubject is the core NATS subject of a region's live lobby list.
func PopularSubject(region string) string { return topology.PopularSubject(region) }

// List is a region's lobby list: its game modes with players, by player
// count descending then game mode ascending, as GET
// /api/v1/popular_game_modes answers.
type List struct {
	// Region is the list's region.
	Region string `json:"region"`
	// GameModes are the modes with at least one player.
	GameModes []ModeCount `json:"game_modes"`
	// Version is the list's version (the Gamemodes-Version header), greater
	// than that of every list delivered before on the same subscription.
	Version uint64 `json:"-"`
}

// Subscription delivers a region's live lobby lists until Unsubscribe.
type Subscription struct {
	c      *Client
	sub    *nats.Subscription
	region string
	fn     func(List)
	// Only the NATS callback touches these.
	seen bool   // a list was delivered
	last uint64 // version of the last list delivered
}

// SubscribeRegion calls fn with each lobby list of region the service
// publishes on gamemodes.popular.<REGION>, one call at a time, in version
// order: a list whose Gamemodes-Version is not greater than the last one
// delivered (a late or repeated message) is dropped, and so is a message
// that is not a list of region with a version. The first list comes with
// the region's next change or the service's next periodic republication
// of every list (every 10 s by default), whichever is first. An unknown region is refused with a
// *ValidationError (missing_region or invalid_region). fn must not block for
// long: lists arriving meanwhile wait in the subscription's buffer.
func (c *Client) SubscribeRegion(region string, fn func(List)) (*Subscription, error) {
	if region == "" {
		return nil, &ValidationError{Code: domain.CodeMissingRegion, Message: "region is required"}
	}
	if _, ok := c.catalog.RegionIndex(region); !ok {
		return nil, &ValidationError{Code: domain.CodeInvalidRegion, Message: "unknown region " + strconv.Quote(region)}
	}
	if fn == nil {
		return nil, errors.New("client: subscribe: nil callback")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	s := &Subscription{c: c, region: region, fn: fn}
	sub, err := c.nc.Subscribe(PopularSubject(region), s.handle)
	if err != nil {
		return nil, fmt.Errorf("client: subscribe %s: %w", PopularSubject(region), err)
	}
	s.sub = sub
	c.subs[s] = struct{}{}
	return s, nil
}

// Region returns the subscription's region.
func (s *Subscription) Region() string { return s.region }

// Unsubscribe stops the deliveries; a call of fn in progress finishes.
// Calling it again, or after Client.Close, is harmless.
func (s *Subscription) Unsubscribe() error {
	s.c.mu.Lock()
	delete(s.c.subs, s)
	s.c.mu.Unlock()
	if err := s.sub.Unsubscribe(); err != nil && !ignorableUnsubscribe(err) {
		return fmt.Errorf("client: unsubscribe %s: %w", s.region, err)
	}
	return nil
}

// handle decodes one message and delivers it when it is newer than the last.
func (s *Subscription) handle(m *nats.Msg) {
	l, err := decodeList(m, s.region)
	if err != nil {
		s.c.log.Debug("gamemodes client: live list dropped", "subject", m.Subject, "err", err)
		return
	}
	if s.seen && l.Version <= s.last {
		s.c.log.Debug("gamemodes client: live list dropped", "subject", m.Subject, "version", l.Version, "last", s.last)
		return
	}
	s.seen, s.last = true, l.Version
	s.fn(l)
}

// decodeList decodes a live lobby list message of region.
func decodeList(m *nats.Msg, region string) (List, error) {
	v := m.Header.Get(VersionHeader)
	if v == "" {
		return List{}, errors.New("no " + VersionHeader + " header")
	}
	version, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return List{}, fmt.Errorf("bad %s header %q", VersionHeader, v)
	}
	var l List
	if err := json.Unmarshal(m.Data, &l); err != nil {
		return List{}, fmt.Errorf("bad list: %w", err)
	}
	if l.Region != region {
		return List{}, fmt.Errorf("list of region %q on the subject of %q", l.Region, region)
	}
	if l.GameModes == nil {
		l.GameModes = []ModeCount{}
	}
	l.Version = version
	return l, nil
}

// ignorableUnsubscribe reports an unsubscribe error meaning there is nothing
// left to stop.
func ignorableUnsubscribe(err error) bool {
	return errors.Is(err, nats.ErrBadSubscription) || errors.Is(err, nats.ErrConnectionClosed)
}
