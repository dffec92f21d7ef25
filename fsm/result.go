package fsm

import (
	"errors"
	"fmt"
)

// Sentinel errors. A refused command's error (from [Result.AsError] or
// [ResultOf]) matches exactly one of them with errors.Is.
var (
	// ErrInvalid: the command is malformed or its values are out of range.
	ErrInvalid = errors.New("invalid command")
	// ErrNotFound: the command names a node, plan, pair or blob that does
	// not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the command is well-formed but the current state does not
	// allow it (wrong plan state, order of phases, roles, deadlines).
	ErrConflict = errors.New("conflicts with the current state")
	// ErrUnsupported: unknown command type or version.
	ErrUnsupported = errors.New("unsupported command")
	// ErrTooLarge: a patch module over MaxBlobSize.
	ErrTooLarge = errors.New("too large")
	// ErrInternal: a bug in the FSM; the command was refused.
	ErrInternal = errors.New("internal error")
	// ErrNoResult: an ApplyFuture response that is not a *Result.
	ErrNoResult = errors.New("no fsm result")
)

// Code is the serialisable form of a sentinel error.
type Code string

// Codes, one per sentinel error.
const (
	CodeInvalid     Code = "invalid"
	CodeNotFound    Code = "not_found"
	CodeConflict    Code = "conflict"
	CodeUnsupported Code = "unsupported"
	CodeTooLarge    Code = "too_large"
	CodeInternal    Code = "internal"
)

func (c Code) sentinel() error {
	switch c {
	case CodeInvalid:
		return ErrInvalid
	case CodeNotFound:
		return ErrNotFound
	case CodeConflict:
		return ErrConflict
	case CodeUnsupported:
		return ErrUnsupported
	case CodeTooLarge:
		return ErrTooLarge
	}
	return ErrInternal
}

func codeOf(err error) Code {
	for _, c := range []Code{CodeInvalid, CodeNotFound, CodeConflict, CodeUnsupported, CodeTooLarge} {
		if errors.Is(err, c.sentinel()) {
			return c
		}
	}
	return CodeInternal
}

// Result is what Apply returns for every command log entry.
type Result struct {
	Index uint64      `json:"index"` // raft log index
	Type  CommandType `json:"type"`  // "" when the entry could not be decoded
	// Err is the one-line reason a command was refused; "" on success. A
	// refused command changed nothing.
	Err  string `json:"err"`
	Code Code   `json:"code"` // "" on success
	// Noop is true when the command was accepted but there was nothing to
	// change (e.g. rolling back a plan that is already rolled back);
	// Message says why.
	Noop    bool   `json:"noop"`
	Message string `json:"message"`
	// PlanID is the id SubmitPlan assigned.
	PlanID string `json:"plan_id"`
	// BlobData are the module bytes of a legacy PutBlob entry, for the
	// node to write into its module store (the state keeps the reference).
	BlobData []byte `json:"-"`
}

// AsError returns nil when the command was applied, else a *CommandError.
func (r *Result) AsError() error {
	if r == nil {
		return ErrNoResult
	}
	if r.Err == "" {
		return nil
	}
	return &CommandError{Type: r.Type, Msg: r.Err, Err: r.Code.sentinel()}
}

// ResultOf interprets an ApplyFuture's Response: the *Result, and its
// AsError (or ErrNoResult when resp is not a *Result).
func ResultOf(resp any) (*Result, error) {
	r, ok := resp.(*Result)
	if !ok || r == nil {
		return nil, fmt.Errorf("%w: got %T", ErrNoResult, resp)
	}
	return r, r.AsError()
}

// CommandError is a refused command.
type CommandError struct {
	Type CommandType // the command type, "" if it could not be decoded
	Msg  string      // one line for an operator
	Err  error       // one of the sentinel errors
}

func (e *CommandError) Error() string { return e.Msg }

// Unwrap returns the sentinel error.
func (e *CommandError) Unwrap() error { return e.Err }

// refuse builds an apply-time error of the given kind.
func refuse(kind error, format string, args ...any) error {
	return &CommandError{Msg: fmt.Sprintf(format, args...), Err: kind}
}
