// Package houserules holds no code: its test enforces the repository's
// house rules over every Go file, so that a change that breaks one fails
// `make test` rather than waiting for a reviewer to notice.
//
// The rules, each a subtest of TestHouseRules:
//
//   - Every package has a package comment ("Package x ..." or, for a
//     command, "Command x ...").
//   - Code says any, never interface{}.
//   - Library packages neither print to standard output or error nor exit
//     the process: they return errors and log through log/slog. Commands
//     (cmd/, cli/, bench/, examples/) may.
//   - Every built-in pipe type is one file in internal/builtin with its
//     test beside it.
//   - Package metrics implements every engine and ml hook interface, each
//     checked at compile time (var _ engine.XHook = (*Metrics)(nil)).
//   - Only commands import pipes/language (lingua's 125 MB of models),
//     serde does not import pipes, and only tests import
//     internal/testfixtures.
//
// TestPublicAPIDeps checks, with go list, that the public API a custom pipe
// imports (package pipes) links none of the ML backends, gRPC, Pebble,
// franz-go, tink or the built-in pipes.
package houserules
