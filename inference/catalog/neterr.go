package catalog

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"syscall"
)

// netError says in one line why host could not be reached and what to do.
func netError(host string, err error) error {
	var dns *net.DNSError
	var cert *tls.CertificateVerificationError
	var ne net.Error
	switch {
	case errors.As(err, &dns):
		return fmt.Errorf("cannot look up %s (DNS: %s): no network or no DNS server; check your connection, or set GIBBON_HUB_URL to a hub you can reach", host, dns.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot connect to %s (connection refused): check your network and proxy (HTTPS_PROXY), or set GIBBON_HUB_URL", host)
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return fmt.Errorf("cannot reach %s (no route to it: offline?): check your network connection", host)
	case errors.As(err, &cert):
		return fmt.Errorf("%s presented a TLS certificate this machine does not trust (a proxy intercepting HTTPS?): fix the proxy or its CA, or set GIBBON_HUB_URL", host)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%s did not answer in time: check your network and try again", host)
	}
	return fmt.Errorf("cannot reach %s (%v): check your network and try again", host, err)
}

// isTransient reports whether a failed request is worth retrying: a cut or timed-out
// connection, not a host that does not resolve or refuses connections.
func isTransient(err error) bool {
	var dns *net.DNSError
	var cert *tls.CertificateVerificationError
	if errors.As(err, &dns) || errors.As(err, &cert) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) {
		return false
	}
	return true
}

// diskError says a write failed, in one line; a full disk says what to do.
func diskError(path string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, io.ErrShortWrite) {
		return fmt.Errorf("the disk holding %s is full: free some space, then run the same command again (a download resumes)", filepath.Dir(path))
	}
	return fmt.Errorf("write %s: %w", path, err)
}
