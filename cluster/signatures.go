package cluster

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"

	"lp/cluster/api"
	"lp/signing"
)

// Signed patches (trusted_keys in lpd.yaml). With trusted keys set, the
// leader refuses a submission whose module no trusted key signed, and every
// agent checks the signatures stored with the blob again, over the bytes it
// read from its data dir and is about to load (agent.go, blobs.go).

// loadTrustedKeys parses trusted_keys (config.Node.Validate checked them).
func (n *Node) loadTrustedKeys() error {
	keys, err := n.cfg.Node.TrustedPublicKeys()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	n.trusted = keys
	if len(keys) > 0 {
		n.log.Info("trusted_keys set: patch modules must be signed", "keys", len(keys))
	}
	return nil
}

// submittedModuleName is the name a submission's module goes by in
// messages and as the default patch id.
func submittedModuleName(req api.SubmitRequest) string {
	name := filepath.Base(req.ModuleName)
	if name == "." || name == "/" || name == "" {
		name = "module.so"
	}
	return name
}

// checkSubmitSignature applies this node's trusted keys to a submission
// before anything else looks at the module's bytes. It returns the key that
// verified the signature ("" without trusted keys), or the HTTP status and
// one line naming the module and the reason.
func (n *Node) checkSubmitSignature(req api.SubmitRequest) (string, int, error) {
	name := submittedModuleName(req)
	if len(req.Signature) != 0 && len(req.Signature) != ed25519.SignatureSize {
		return "", http.StatusBadRequest, fmt.Errorf("%s: bad signature: %d bytes; want %d (ed25519)", name, len(req.Signature), ed25519.SignatureSize)
	}
	if len(n.trusted) == 0 {
		return "", 0, nil
	}
	k, err := signing.Verify(n.trusted, req.Module, req.Signature)
	switch {
	case errors.Is(err, signing.ErrNotSigned):
		return "", http.StatusForbidden, fmt.Errorf("%s: not signed (trusted_keys is set; sign it with lpctl patch sign)", name)
	case err != nil:
		return "", http.StatusForbidden, fmt.Errorf("%s: %v", name, err)
	}
	return signing.FormatPublicKey(k), 0, nil
}

// verifyLoad checks, on an agent, the signatures stored with a blob over
// the bytes read from the module file: nil when this node has no trusted
// keys.
func (n *Node) verifyLoad(path string, data []byte, sigs [][]byte) error {
	if len(n.trusted) == 0 {
		return nil
	}
	_, err := signing.VerifyAny(n.trusted, data, sigs)
	switch {
	case errors.Is(err, signing.ErrNotSigned):
		return fmt.Errorf("refused: module not signed, and this node has trusted_keys: %s", path)
	case err != nil:
		return fmt.Errorf("refused: module %v of this node: %s", err, path)
	}
	return nil
}
