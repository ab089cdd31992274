package gallery

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
)

// Slugs are 12 characters of Crockford's base32 (no i, l, o, u, so no look-alikes):
// 60 random bits, short enough to read aloud, too many to guess.
const (
	slugAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	SlugLen      = 12
	tokenBytes   = 32
)

func newSlug() string {
	b := make([]byte, SlugLen)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	for i := range b {
		b[i] = slugAlphabet[b[i]&31]
	}
	return string(b)
}

// ValidSlug reports whether s could be a slug; check it before any lookup or path.
func ValidSlug(s string) bool {
	if len(s) != SlugLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !inAlphabet(s[i]) {
			return false
		}
	}
	return true
}

func inAlphabet(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z' && c != 'i' && c != 'l' && c != 'o' && c != 'u')
}

// newToken returns a delete token for the saver and the hash the store keeps.
func newToken() (token string, hash []byte) {
	b := make([]byte, tokenBytes)
	_, _ = rand.Read(b)
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, hashToken(token)
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func tokenMatches(token string, hash []byte) bool {
	return len(token) <= 128 && subtle.ConstantTimeCompare(hashToken(token), hash) == 1
}
