package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lp/internal/fixture"
	"lp/signing"
)

func TestSignVerbs(t *testing.T) {
	dir := t.TempDir()
	b := fixture.NewBuilder(dir)
	mod := b.Build(t, "fix1.so", "-shared", "-fPIC", "-O2", "-I../../include", "../../engine/testdata/fix1.c")
	key, other := filepath.Join(dir, "ci.key"), filepath.Join(dir, "other.key")

	oneLine := func(name string, code int, errs, want string) {
		t.Helper()
		if code == 0 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, want) {
			t.Errorf("%s: exit %d, stderr %q; want non-zero and one line containing %q", name, code, errs, want)
		}
	}

	code, out, errs := lpctl("patch", "keygen", key)
	if code != 0 || !strings.Contains(out, "trusted_keys: [") {
		t.Fatalf("keygen = %d %q %q", code, out, errs)
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	pubText, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signing.ParsePublicKey(pubText); err != nil || !strings.Contains(out, strings.TrimSpace(string(pubText))) {
		t.Fatalf("KEY.pub %q: %v; want a public key, the one keygen printed", pubText, err)
	}
	before, _ := os.ReadFile(key)
	code, _, errs = lpctl("patch", "keygen", key)
	oneLine("keygen over an existing key", code, errs, "already exists")
	if after, _ := os.ReadFile(key); string(after) != string(before) {
		t.Errorf("keygen over an existing key changed it")
	}
	if code, _, errs = lpctl("patch", "keygen", other); code != 0 {
		t.Fatalf("keygen other: %q", errs)
	}

	// Unsigned: inspect says so, verify refuses.
	code, out, _ = lpctl("patch", "inspect", mod)
	if code != 0 || !strings.Contains(out, "signature:") || !strings.Contains(out, "none") {
		t.Errorf("inspect unsigned = %d %q; want a signature: none line", code, out)
	}
	code, _, errs = lpctl("patch", "verify", mod, "--pub", key+".pub")
	oneLine("verify unsigned", code, errs, "not signed")

	// Sign refuses what is not a module, and a public key as the key.
	code, _, errs = lpctl("patch", "sign", key+".pub", "--key", key)
	oneLine("sign a non-ELF file", code, errs, "not an ELF file")
	if _, err := os.Stat(key + ".pub.sig"); err == nil {
		t.Errorf("sign of a non-module wrote a signature")
	}
	code, _, errs = lpctl("patch", "sign", mod, "--key", key+".pub")
	oneLine("sign with a public key", code, errs, "want 64")

	code, out, errs = lpctl("patch", "sign", mod, "--key", key)
	if code != 0 || !strings.Contains(out, "wrote "+mod+".sig") {
		t.Fatalf("sign = %d %q %q", code, out, errs)
	}
	code, out, errs = lpctl("patch", "verify", mod, "--pub", other+".pub", "--pub", key+".pub")
	if code != 0 || !strings.Contains(out, "good signature by "+strings.TrimSpace(string(pubText))) {
		t.Errorf("verify = %d %q %q; want good, by the signer", code, out, errs)
	}
	code, _, errs = lpctl("patch", "verify", mod, "--pub", other+".pub")
	oneLine("verify with another key", code, errs, "does not verify")
	code, out, _ = lpctl("patch", "inspect", mod, "--pub", key+".pub", "-o", "json")
	var info struct {
		ID        string        `json:"id"`
		Signature signatureInfo `json:"signature"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.ID != "fix1" || !info.Signature.Verified ||
		info.Signature.Key != strings.TrimSpace(string(pubText)) {
		t.Errorf("inspect -o json = %d %q; want fix1, verified by the key", code, out)
	}

	// A module changed after signing no longer verifies.
	data, _ := os.ReadFile(mod)
	if err := os.WriteFile(mod, append(data, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = lpctl("patch", "verify", mod, "--pub", key+".pub")
	oneLine("verify a modified module", code, errs, "does not verify")
	code, out, _ = lpctl("patch", "inspect", mod, "--pub", key+".pub")
	if code != 0 || !strings.Contains(out, "does not verify") {
		t.Errorf("inspect of a modified module = %d %q; want the signature reported bad", code, out)
	}
}
