package heartbeat

import "errors"

// Sentinel errors of the package; callers test them with errors.Is.
var (
	// ErrMetaTooLarge: the encoded metadata does not fit in MetaMaxSize bytes
	// even after the failing check's output and name were truncated.
	ErrMetaTooLarge = errors.New("node metadata too large")
	// ErrShutdown: the Membership was shut down.
	ErrShutdown = errors.New("membership shut down")
	// ErrInvalidConfig: a Config, Timing, CheckSpec or FlapConfig is invalid;
	// the wrapping error names the field and the limit.
	ErrInvalidConfig = errors.New("invalid configuration")
	// ErrUnknownCheck: no check of that name in the Checker.
	ErrUnknownCheck = errors.New("unknown check")
)
