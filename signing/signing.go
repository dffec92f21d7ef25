// Package signing owns the signatures of patch modules: ed25519 over a
// module file's bytes, and the three small text files that carry keys and
// signatures. It is pure (no I/O but what its callers hand it) and imports
// nothing of lp's.
//
// # Formats
//
// Every file is one line of standard base64 (RFC 4648, with padding), a
// trailing newline allowed, surrounding spaces ignored:
//
//   - KEY.pub: the 32-byte ed25519 public key. The same text is an entry of
//     trusted_keys in lpd.yaml.
//   - KEY: the 64-byte ed25519 private key (seed then public key, as
//     crypto/ed25519 keeps it). ParsePrivateKey also reads a PKCS#8 PEM
//     "PRIVATE KEY" block holding an ed25519 key, as written by
//     `openssl genpkey -algorithm ed25519`.
//   - MODULE.sig: the 64-byte ed25519 signature of the module file's bytes.
//
// # Security
//
// Parsing never panics on any input (the parsers are fuzzed) and refuses
// anything over MaxFileSize. A signature says who produced the module's
// bytes, nothing about what the module does: trust a key only as far as
// you trust its holder to review patches.
package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
)

// MaxFileSize bounds every key or signature file the parsers accept; the
// largest (a PEM private key) is under 200 bytes.
const MaxFileSize = 4096

// SigSuffix is appended to a module's path to name its signature file.
const SigSuffix = ".sig"

// PubSuffix is appended to a private key's path to name its public key.
const PubSuffix = ".pub"

// Sentinel errors; the wrapping error says which file or entry.
var (
	// ErrBadKey: text that is not a key of the expected kind and size.
	ErrBadKey = errors.New("bad key")
	// ErrBadSignature: text that is not a 64-byte base64 signature.
	ErrBadSignature = errors.New("bad signature")
	// ErrNotSigned: a signature is required and there is none.
	ErrNotSigned = errors.New("not signed")
	// ErrUntrusted: no trusted key verifies the signature.
	ErrUntrusted = errors.New("signature does not verify with any trusted key")
)

// oneLine decodes the single line of standard base64 a key or signature file
// holds and checks its decoded length.
func oneLine(data []byte, size int, what string) ([]byte, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is %d bytes; want one line of base64", what, len(data))
	}
	s := bytes.TrimSpace(data)
	if len(s) == 0 {
		return nil, fmt.Errorf("%s is empty", what)
	}
	if bytes.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("%s has more than one line; want one line of base64", what)
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(out, s)
	if err != nil {
		return nil, fmt.Errorf("%s is not base64: %v", what, err)
	}
	if n != size {
		return nil, fmt.Errorf("%s decodes to %d bytes; want %d", what, n, size)
	}
	return out[:n], nil
}

// ParsePublicKey reads a public key: base64 of 32 bytes (a KEY.pub file or a
// trusted_keys entry).
func ParsePublicKey(text []byte) (ed25519.PublicKey, error) {
	b, err := oneLine(text, ed25519.PublicKeySize, "ed25519 public key")
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadKey, err.Error())
	}
	return ed25519.PublicKey(b), nil
}

// ParsePrivateKey reads a private key file: base64 of the 64-byte key, or a
// PKCS#8 PEM block holding an ed25519 key. A 64-byte key whose second half
// is not the public key of its seed is refused.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: ed25519 private key file is %d bytes; want one line of base64 or a PEM block", ErrBadKey, len(data))
	}
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("%w: PEM block is %q; want \"PRIVATE KEY\" (PKCS#8 ed25519)", ErrBadKey, clip(block.Type))
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: PKCS#8: %v", ErrBadKey, err)
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: PKCS#8 key is %T; want ed25519", ErrBadKey, k)
		}
		return priv, nil
	}
	b, err := oneLine(data, ed25519.PrivateKeySize, "ed25519 private key")
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadKey, err.Error())
	}
	priv := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
	if !bytes.Equal(priv, b) {
		return nil, fmt.Errorf("%w: ed25519 private key: its public half does not match its seed", ErrBadKey)
	}
	return priv, nil
}

// ParseSignature reads a signature file: base64 of 64 bytes.
func ParseSignature(data []byte) ([]byte, error) {
	b, err := oneLine(data, ed25519.SignatureSize, "ed25519 signature")
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadSignature, err.Error())
	}
	return b, nil
}

// FormatPublicKey is the text of a KEY.pub file without its newline: what
// goes into trusted_keys.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// FormatPrivateKey is the text of a KEY file without its newline.
func FormatPrivateKey(priv ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(priv)
}

// FormatSignature is the text of a MODULE.sig file without its newline.
func FormatSignature(sig []byte) string {
	return base64.StdEncoding.EncodeToString(sig)
}

// GenerateKey returns a new key pair from rand (crypto/rand when nil).
func GenerateKey(r io.Reader) (ed25519.PublicKey, ed25519.PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	pub, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, nil, fmt.Errorf("generating an ed25519 key: %w", err)
	}
	return pub, priv, nil
}

// Sign signs a module's bytes. A key of the wrong size is an error, not a
// panic.
func Sign(priv ed25519.PrivateKey, module []byte) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: private key is %d bytes; want %d", ErrBadKey, len(priv), ed25519.PrivateKeySize)
	}
	return ed25519.Sign(priv, module), nil
}

// Verify finds the key among keys that made sig over module and returns it.
// It returns ErrNotSigned when sig is empty and ErrUntrusted when no key
// verifies it. Keys and signatures of the wrong size never verify.
func Verify(keys []ed25519.PublicKey, module, sig []byte) (ed25519.PublicKey, error) {
	if len(sig) == 0 {
		return nil, ErrNotSigned
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: %d bytes; want %d", ErrBadSignature, len(sig), ed25519.SignatureSize)
	}
	for _, k := range keys {
		if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, module, sig) {
			return k, nil
		}
	}
	return nil, ErrUntrusted
}

// VerifyAny is Verify for a module that carries several signatures (one per
// signer): the first that a trusted key verifies wins.
func VerifyAny(keys []ed25519.PublicKey, module []byte, sigs [][]byte) (ed25519.PublicKey, error) {
	if len(sigs) == 0 {
		return nil, ErrNotSigned
	}
	err := ErrUntrusted
	for _, s := range sigs {
		k, e := Verify(keys, module, s)
		if e == nil {
			return k, nil
		}
		if errors.Is(e, ErrBadSignature) {
			err = e
		}
	}
	return nil, err
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
