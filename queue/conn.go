package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ConnectTimeout bounds the first connection to NATS and the JetStream check, so
// that a wrong URL stops a web node or a worker at start.
const ConnectTimeout = 5 * time.Second

// reconnectWait is the pause between reconnection attempts (forever: a web node
// or worker outlives a NATS restart).
const reconnectWait = 500 * time.Millisecond

// Conn is one connection to NATS with JetStream: a web node's (its Runner and
// RunStore share it) or a worker's.
type Conn struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	url string // without passwords, for messages
	log *slog.Logger

	mu     sync.Mutex
	onLost []func(error) // called when the connection drops
}

// Connect connects to the NATS server(s) at rawURL (comma-separated URLs are
// tried in turn) as name, and checks that JetStream answers. Errors are one line
// without the password.
func Connect(ctx context.Context, rawURL, name string, log *slog.Logger) (*Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Conn{url: Redact(rawURL), log: log}
	if strings.TrimSpace(rawURL) == "" {
		return nil, errors.New("the NATS URL is empty: give --nats nats://host:4222 (or GIBBON_NATS)")
	}
	nc, err := nats.Connect(rawURL, nats.Name(name), nats.Timeout(ConnectTimeout),
		nats.MaxReconnects(-1), nats.ReconnectWait(reconnectWait),
		nats.DisconnectErrHandler(c.disconnected), nats.ReconnectHandler(c.reconnected))
	if err != nil {
		return nil, fmt.Errorf("NATS at %s is not reachable (%v): start nats-server -js there, or fix --nats", c.url, err)
	}
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("NATS at %s: %v", c.url, err)
	}
	check, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	if _, err := c.js.AccountInfo(check); err != nil {
		nc.Close()
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, fmt.Errorf("NATS at %s has no JetStream: start nats-server with -js (and --store_dir)", c.url)
		}
		return nil, fmt.Errorf("NATS at %s: JetStream does not answer (%v)", c.url, err)
	}
	return c, nil
}

// Close drains nothing: runs in flight are the Runner's and Worker's to end first.
func (c *Conn) Close() { c.nc.Close() }

// URL is the server URL without passwords.
func (c *Conn) URL() string { return c.url }

// Connected reports whether the connection is up now.
func (c *Conn) Connected() bool { return c.nc.IsConnected() }

// whenLost registers f, called (on NATS's goroutine) each time the connection drops.
func (c *Conn) whenLost(f func(error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onLost = append(c.onLost, f)
}

func (c *Conn) disconnected(nc *nats.Conn, err error) {
	if nc.IsClosed() {
		return // closed here, on purpose
	}
	if err == nil {
		err = errors.New("the server closed the connection")
	}
	c.log.Warn("lost the connection to NATS", "url", c.url, "err", err)
	c.mu.Lock()
	fs := slices.Clone(c.onLost)
	c.mu.Unlock()
	for _, f := range fs {
		f(err)
	}
}

func (c *Conn) reconnected(nc *nats.Conn) {
	c.log.Info("connected to NATS again", "url", Redact(nc.ConnectedUrl()))
}

// maxMessage is the largest message body this connection sends; larger ones
// travel through the object store. Room is left for headers and subjects.
func (c *Conn) maxMessage() int {
	return int(c.nc.MaxPayload()) - 4096
}

// Redact hides passwords and tokens in a NATS URL (or comma-separated URLs).
func Redact(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		u, err := url.Parse(p)
		if err != nil || u.User == nil {
			parts[i] = p
			continue
		}
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx") // a bare token
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
