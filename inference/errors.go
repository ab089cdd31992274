package inference

import (
	"errors"
	"fmt"
)

// ErrInvalid matches errors in what was asked rather than in doing it: a model the
// manifest does not list or lists as another kind, models that take different
// inputs, settings out of range. A command line reports them as usage errors.
var ErrInvalid = errors.New("invalid request")

// Invalidf is an error matching ErrInvalid, with its own message.
func Invalidf(format string, args ...any) error {
	return invalidError(fmt.Sprintf(format, args...))
}

type invalidError string

func (e invalidError) Error() string        { return string(e) }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }
