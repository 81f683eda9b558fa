package transfer

import "errors"

// ErrInvalidReference: an image, source or store reference that cannot be parsed. Nothing
// was read or written.
var ErrInvalidReference = errors.New("invalid reference")
