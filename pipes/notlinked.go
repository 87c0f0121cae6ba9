package pipes

import "fmt"

// packaged are the pipe types streamer provides in packages of their own,
// outside package pipes, because of what they link into a binary; a binary
// has one only if it imports its package, which registers the type into
// DefaultEnvironment. Each has the import path and a note for users of the
// streamer command.
var packaged = map[string]struct{ path, note string }{
	"language": {
		path: "github.com/streamerio/streamer/pipes/language",
		note: "lingua's models add 125 MB to a binary; the streamer command imports it unless built with -tags nolanguage, " +
			"as the default container image is: use the image tagged VERSION-language",
	},
}

// NotLinked returns, for a pipe type that streamer provides in a package of
// its own that this binary does not import, an error message saying so and
// naming the import that adds it. It returns "" for any other name,
// including a type registered in DefaultEnvironment.
func NotLinked(name string) string {
	p, ok := packaged[name]
	if !ok {
		return ""
	}
	if _, ok := defaultEnv.Lookup(name); ok {
		return ""
	}
	return fmt.Sprintf("the %s pipe is not in this build of streamer: a binary has it only if it imports %q (%s)", name, p.path, p.note)
}
