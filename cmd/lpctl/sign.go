package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"lp/engine/module"
	"lp/signing"
)

// The signing verbs: keygen, sign, verify. Key and signature files are the
// formats of package signing (one line of base64 each).

func patchKeygenCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "keygen KEY",
		Short: "Write a new ed25519 signing key to KEY (mode 0600) and its public key to KEY.pub",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			pubPath := key + signing.PubSuffix
			for _, p := range []string{key, pubPath} {
				if _, err := os.Lstat(p); err == nil {
					return fmt.Errorf("%s already exists; refusing to overwrite a key (remove it first, or choose another name)", p)
				} else if !errors.Is(err, os.ErrNotExist) {
					return unwrapPath(err)
				}
			}
			pub, priv, err := signing.GenerateKey(nil)
			if err != nil {
				return err
			}
			if err := writeNew(key, signing.FormatPrivateKey(priv)+"\n", 0o600); err != nil {
				return err
			}
			if err := writeNew(pubPath, signing.FormatPublicKey(pub)+"\n", 0o644); err != nil {
				os.Remove(key)
				return err
			}
			if a.output == "json" {
				return a.printJSON(struct {
					Key       string `json:"key"`
					PublicKey string `json:"public_key_file"`
					Public    string `json:"public_key"`
				}{key, pubPath, signing.FormatPublicKey(pub)})
			}
			fmt.Fprintf(a.stdout, "wrote %s (private: keep it secret) and %s\n", key, pubPath)
			fmt.Fprintf(a.stdout, "trust it in lpd.yaml with:  trusted_keys: [%s]\n", signing.FormatPublicKey(pub))
			return nil
		},
	}
}

// writeNew creates path (it must not exist) with the given mode and text.
func writeNew(path, text string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return unwrapPath(err)
	}
	_, werr := f.WriteString(text)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// readSmall reads a key or signature file, refusing one over the size any
// of them can have.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, signing.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, nil
}

func readPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := readSmall(path)
	if err != nil {
		return nil, err
	}
	k, err := signing.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func readPublicKeys(paths []string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, p := range paths {
		data, err := readSmall(p)
		if err != nil {
			return nil, err
		}
		k, err := signing.ParsePublicKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// readSignature reads the signature of module at path: (nil, nil) when no
// signature file lies beside it.
func readSignature(path string) ([]byte, error) {
	data, err := readSmall(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sig, err := signing.ParseSignature(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sig, nil
}

func patchSignCommand(a *app) *cobra.Command {
	var keyPath string
	c := &cobra.Command{
		Use:   "sign MODULE --key KEY",
		Short: "Sign a patch module with an ed25519 key; writes MODULE.sig",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			priv, err := readPrivateKey(keyPath)
			if err != nil {
				return err
			}
			// The bytes signed are the bytes checked: one read.
			m, err := module.Open(args[0])
			if err != nil {
				return err
			}
			sig, err := signing.Sign(priv, m.Data)
			if err != nil {
				return err
			}
			sigPath := args[0] + signing.SigSuffix
			if err := replaceFile(sigPath, signing.FormatSignature(sig)+"\n", 0o644); err != nil {
				return err
			}
			pub := signing.FormatPublicKey(priv.Public().(ed25519.PublicKey))
			if a.output == "json" {
				return a.printJSON(struct {
					Module    string `json:"module"`
					Signature string `json:"signature_file"`
					SHA256    string `json:"sha256"`
					Key       string `json:"public_key"`
				}{args[0], sigPath, m.SHA256, pub})
			}
			fmt.Fprintf(a.stdout, "wrote %s: %s (sha256 %s) signed by %s\n", sigPath, m.ID, m.SHA256, pub)
			return nil
		},
	}
	c.Flags().StringVar(&keyPath, "key", "", "private key file written by lpctl patch keygen (required)")
	_ = c.MarkFlagRequired("key")
	return c
}

// replaceFile writes path whole or not at all (a temporary file renamed).
func replaceFile(path, text string, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return unwrapPath(err)
	}
	_, werr := tmp.WriteString(text)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), mode)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func patchVerifyCommand(a *app) *cobra.Command {
	var pubs []string
	c := &cobra.Command{
		Use:   "verify MODULE --pub KEY.pub",
		Short: "Check MODULE.sig against the given public keys, as lpd does with trusted_keys",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := readPublicKeys(pubs)
			if err != nil {
				return err
			}
			data, err := readModule(args[0])
			if err != nil {
				return err
			}
			sigPath := args[0] + signing.SigSuffix
			sig, err := readSignature(sigPath)
			if err != nil {
				return err
			}
			k, err := signing.Verify(keys, data, sig)
			switch {
			case errors.Is(err, signing.ErrNotSigned):
				return fmt.Errorf("%s: not signed (no %s; sign it with lpctl patch sign)", args[0], sigPath)
			case errors.Is(err, signing.ErrUntrusted):
				return fmt.Errorf("%s: %s does not verify with the given key(s)", args[0], sigPath)
			case err != nil:
				return fmt.Errorf("%s: %v", args[0], err)
			}
			if a.output == "json" {
				return a.printJSON(struct {
					Module string `json:"module"`
					Key    string `json:"public_key"`
				}{args[0], signing.FormatPublicKey(k)})
			}
			fmt.Fprintf(a.stdout, "%s: good signature by %s\n", args[0], signing.FormatPublicKey(k))
			return nil
		},
	}
	c.Flags().StringArrayVar(&pubs, "pub", nil, "public key file (KEY.pub); repeat for several (required)")
	_ = c.MarkFlagRequired("pub")
	return c
}

// readModule reads a module's bytes, up to the engine's limit.
func readModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, module.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > module.MaxSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, module.MaxSize)
	}
	return data, nil
}

// signatureInfo is what patch inspect says about MODULE.sig.
type signatureInfo struct {
	File     string `json:"file,omitempty"`       // the .sig beside the module; empty when none
	Key      string `json:"public_key,omitempty"` // the --pub key that verifies it
	Verified bool   `json:"verified"`             // a --pub key verifies it
	Problem  string `json:"problem,omitempty"`    // why it does not verify (with --pub) or does not parse
}

// inspectSignature reports on the signature beside path, checked against
// keys when there are any.
func inspectSignature(path string, data []byte, keys []ed25519.PublicKey) signatureInfo {
	sigPath := path + signing.SigSuffix
	sig, err := readSignature(sigPath)
	switch {
	case err != nil:
		return signatureInfo{File: sigPath, Problem: err.Error()}
	case sig == nil:
		return signatureInfo{}
	}
	si := signatureInfo{File: sigPath}
	if len(keys) == 0 {
		return si
	}
	k, err := signing.Verify(keys, data, sig)
	if err != nil {
		si.Problem = err.Error()
		return si
	}
	si.Key, si.Verified = signing.FormatPublicKey(k), true
	return si
}

func (s signatureInfo) String() string {
	switch {
	case s.File == "":
		return "none (no .sig beside it)"
	case s.Verified:
		return fmt.Sprintf("%s, good, by %s", s.File, s.Key)
	case s.Problem != "":
		return fmt.Sprintf("%s: %s", s.File, s.Problem)
	}
	return s.File + " (not checked: give --pub KEY.pub)"
}
