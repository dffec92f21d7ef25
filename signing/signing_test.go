package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

// fixedKey returns a deterministic key pair (seed byte b repeated).
func fixedKey(b byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

func TestRoundTrip(t *testing.T) {
	pub, priv, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	gotPub, err := ParsePublicKey([]byte(FormatPublicKey(pub) + "\n"))
	if err != nil || !gotPub.Equal(pub) {
		t.Fatalf("ParsePublicKey(FormatPublicKey) = %x, %v; want %x", gotPub, err, pub)
	}
	gotPriv, err := ParsePrivateKey([]byte(FormatPrivateKey(priv) + "\n"))
	if err != nil || !gotPriv.Equal(priv) {
		t.Fatalf("ParsePrivateKey(FormatPrivateKey) = %v; want the key back", err)
	}
	module := []byte("\x7fELF module bytes")
	sig, err := Sign(priv, module)
	if err != nil {
		t.Fatal(err)
	}
	gotSig, err := ParseSignature([]byte("  " + FormatSignature(sig) + "\r\n"))
	if err != nil || !bytes.Equal(gotSig, sig) {
		t.Fatalf("ParseSignature(FormatSignature) = %x, %v; want %x", gotSig, err, sig)
	}
	other, _ := fixedKey(7)
	k, err := Verify([]ed25519.PublicKey{other, pub}, module, sig)
	if err != nil || !k.Equal(pub) {
		t.Fatalf("Verify = %x, %v; want the signer's key", k, err)
	}
}

func TestVerifyRefusals(t *testing.T) {
	pub, priv := fixedKey(1)
	other, otherPriv := fixedKey(2)
	module := []byte("module")
	sig, _ := Sign(priv, module)
	otherSig, _ := Sign(otherPriv, module)
	tampered := append(bytes.Clone(module), 0)
	cases := []struct {
		name   string
		keys   []ed25519.PublicKey
		module []byte
		sig    []byte
		want   error
	}{
		{"unsigned", []ed25519.PublicKey{pub}, module, nil, ErrNotSigned},
		{"other key", []ed25519.PublicKey{pub}, module, otherSig, ErrUntrusted},
		{"tampered module", []ed25519.PublicKey{pub, other}, tampered, sig, ErrUntrusted},
		{"no keys", nil, module, sig, ErrUntrusted},
		{"short signature", []ed25519.PublicKey{pub}, module, sig[:10], ErrBadSignature},
		{"short key", []ed25519.PublicKey{pub[:5]}, module, sig, ErrUntrusted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Verify(tc.keys, tc.module, tc.sig); !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v; want %v", err, tc.want)
			}
		})
	}
	if k, err := VerifyAny([]ed25519.PublicKey{pub}, module, [][]byte{otherSig, sig}); err != nil || !k.Equal(pub) {
		t.Errorf("VerifyAny(other, good) = %v; want the good one to verify", err)
	}
	if _, err := VerifyAny([]ed25519.PublicKey{pub}, module, nil); !errors.Is(err, ErrNotSigned) {
		t.Errorf("VerifyAny(none) = %v; want ErrNotSigned", err)
	}
	if _, err := Sign(priv[:10], module); !errors.Is(err, ErrBadKey) {
		t.Errorf("Sign(short key) = %v; want ErrBadKey", err)
	}
}

func TestParseRefusals(t *testing.T) {
	pub, priv := fixedKey(3)
	b64 := base64.StdEncoding.EncodeToString
	badPriv := bytes.Clone(priv)
	badPriv[40] ^= 1 // public half no longer matches the seed
	cases := []struct {
		name  string
		parse func([]byte) error
		in    string
		want  string
	}{
		{"pub empty", pubErr, "", "empty"},
		{"pub not base64", pubErr, "not base64!", "not base64"},
		{"pub short", pubErr, b64(pub[:31]), "decodes to 31 bytes; want 32"},
		{"pub is a private key", pubErr, b64(priv), "decodes to 64 bytes; want 32"},
		{"pub two lines", pubErr, b64(pub) + "\n" + b64(pub), "more than one line"},
		{"pub url encoding", pubErr, base64.RawURLEncoding.EncodeToString(pub), "not base64"},
		{"priv is a public key", privErr, b64(pub), "decodes to 32 bytes; want 64"},
		{"priv halves differ", privErr, b64(badPriv), "does not match its seed"},
		{"priv other PEM", privErr, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", `"CERTIFICATE"`},
		{"priv bad PKCS8", privErr, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PKCS#8"},
		{"priv too large", privErr, strings.Repeat("A", MaxFileSize+1), "bytes"},
		{"sig short", sigErr, b64(make([]byte, 63)), "decodes to 63 bytes; want 64"},
		{"sig garbage", sigErr, "\x00\xff", "not base64"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("parse(%q) = %v; want one line containing %q", clip(tc.in), err, tc.want)
			}
		})
	}
}

func pubErr(b []byte) error  { _, err := ParsePublicKey(b); return err }
func privErr(b []byte) error { _, err := ParsePrivateKey(b); return err }
func sigErr(b []byte) error  { _, err := ParseSignature(b); return err }

func TestPrivateKeyPKCS8(t *testing.T) {
	_, priv := fixedKey(4)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	text := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	got, err := ParsePrivateKey(text)
	if err != nil || !got.Equal(priv) {
		t.Fatalf("ParsePrivateKey(PKCS#8 PEM) = %v; want the key", err)
	}
}

// FuzzParse: no input panics any parser, errors are one line, and what
// parses has the right size and formats back to the same key or signature.
func FuzzParse(f *testing.F) {
	pub, priv := fixedKey(5)
	sig, _ := Sign(priv, []byte("m"))
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	for _, s := range []string{
		"", "\n", "====", "A", FormatPublicKey(pub), FormatPrivateKey(priv), FormatSignature(sig),
		FormatPublicKey(pub) + "\n", " " + FormatSignature(sig) + " \n",
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"-----BEGIN PRIVATE KEY-----\n\n-----END PRIVATE KEY-----\n", "\xff\xfe\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		oneLineErr := func(err error) {
			if err != nil && strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error %q is not one line", err)
			}
		}
		if k, err := ParsePublicKey(data); err == nil {
			if len(k) != ed25519.PublicKeySize {
				t.Fatalf("public key of %d bytes", len(k))
			}
			if _, err := ParsePublicKey([]byte(FormatPublicKey(k))); err != nil {
				t.Fatalf("formatted key does not parse: %v", err)
			}
		} else {
			oneLineErr(err)
		}
		if k, err := ParsePrivateKey(data); err == nil {
			if len(k) != ed25519.PrivateKeySize {
				t.Fatalf("private key of %d bytes", len(k))
			}
			// A key that parses signs, and its signature verifies.
			s, err := Sign(k, data)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Verify([]ed25519.PublicKey{k.Public().(ed25519.PublicKey)}, data, s); err != nil {
				t.Fatalf("a parsed private key's signature does not verify: %v", err)
			}
		} else {
			oneLineErr(err)
		}
		if s, err := ParseSignature(data); err == nil {
			if len(s) != ed25519.SignatureSize {
				t.Fatalf("signature of %d bytes", len(s))
			}
			if _, err := Verify([]ed25519.PublicKey{pub}, data, s); err != nil && !errors.Is(err, ErrUntrusted) {
				t.Fatalf("Verify of a parsed signature: %v; want nil or ErrUntrusted", err)
			}
		} else {
			oneLineErr(err)
		}
	})
}
