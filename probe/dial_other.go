//go:build !linux

package probe

import (
	"context"
	"net/netip"
	"time"
)

func dialAddr(ctx context.Context, c *canceler, ap netip.AddrPort, deadline time.Time) (connection, error) {
	return dialPortable(ctx, c, ap, deadline)
}
