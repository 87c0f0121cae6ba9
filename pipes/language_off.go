//go:build nolanguage

package pipes

// languageBuildTag is the build tag that leaves the language pipe out.
const languageBuildTag = "nolanguage"

// Without lingua (-tags nolanguage, which the default container image uses
// to stay small), the language pipe is registered with the same config, so
// that a topology using it decodes as in every build, and refuses to build
// with an error that says which build has it.
func init() {
	s := languageSpec
	s.Summary += " Not in this build (-tags " + languageBuildTag + "): use the image tagged VERSION-language."
	MustRegister("language", s, func(c LanguageConfig, _ *Env) (Pipe, error) {
		return nil, Errorf(c.Pos, "the language pipe is not in this build of streamer (built with -tags %s, which leaves out lingua's 125 MB of models): "+
			"use the image tagged VERSION-language, or a binary built without -tags %s", languageBuildTag, languageBuildTag)
	})
}
