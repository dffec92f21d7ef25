package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// Token is one configured bearer token.
type Token struct {
	Name   string
	Role   string // RoleReader or RoleOperator
	SHA256 string // hex
}

// Tokens checks bearer secrets against the configured hashes.
type Tokens struct {
	list []token
}

type token struct {
	id  Identity
	sum [sha256.Size]byte
}

// NewTokens decodes the configured tokens.
func NewTokens(ts []Token) (*Tokens, error) {
	t := &Tokens{}
	for i, c := range ts {
		b, err := hex.DecodeString(c.SHA256)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("tokens[%d].sha256: want 64 hex digits", i)
		}
		switch c.Role {
		case RoleReader, RoleOperator:
		default:
			return nil, fmt.Errorf("tokens[%d].role: want reader or operator, got %q", i, clip(c.Role))
		}
		if !validName(c.Name) {
			return nil, fmt.Errorf("tokens[%d].name: %q is not a valid name", i, clip(c.Name))
		}
		var tk token
		copy(tk.sum[:], b)
		tk.id = Identity{Role: c.Role, Name: c.Name, Via: ViaToken}
		t.list = append(t.list, tk)
	}
	return t, nil
}

// Len is the number of tokens.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.list)
}

// Lookup returns the identity of secret. Every configured hash is compared,
// in constant time, whatever matches: the time taken says nothing about
// which token came close.
func (t *Tokens) Lookup(secret string) (Identity, bool) {
	if t == nil || secret == "" {
		return Identity{}, false
	}
	sum := sha256.Sum256([]byte(secret))
	var (
		found Identity
		ok    int
	)
	for _, tk := range t.list {
		if subtle.ConstantTimeCompare(sum[:], tk.sum[:]) == 1 {
			found, ok = tk.id, 1
		}
	}
	return found, ok == 1
}

// BearerSecret returns the secret of an "Authorization: Bearer SECRET"
// header value; ok is false when the header is absent or of another
// scheme.
func BearerSecret(header string) (secret string, ok bool) {
	scheme, rest, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	rest = strings.TrimSpace(rest)
	return rest, rest != ""
}
