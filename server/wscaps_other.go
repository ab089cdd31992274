//go:build !unix

package server

// fdLimit is unknown here (0): the websocket cap takes its default unless
// Config.MaxSockets sets it.
func fdLimit() uint64 { return 0 }
