package language

import "github.com/streamerio/streamer/pipes"

// Config configures the language pipe.
//
// The default language set is a memory choice. Lingua keeps its n-gram
// models in process-wide maps that are never freed. In high-accuracy mode
// all 75 languages take about 1 GB of heap; the default 16 take 250 MB.
// Low-accuracy mode loads only trigram models: 12 MB for the default set,
// 51 MB for all 75. BenchmarkLanguageMemory measures these.
type Config struct {
	Text          pipes.Expr    `yaml:"text" required:"true" doc:"Expression giving the text whose language is detected, such as message. Null text gives null outputs; any other non-string fails the record."`
	Output        pipes.Field   `yaml:"output" required:"true" doc:"Field that receives the ISO 639-1 code of the language (such as en), or null when no language is detected reliably."`
	Confidence    pipes.Field   `yaml:"confidence" doc:"Field that receives the top language's confidence, from 0 to 1 (null for null text)."`
	Languages     []pipes.Field `yaml:"languages" default:"[ar, de, en, es, fr, hi, id, it, ja, ko, nl, pl, pt, ru, tr, zh]" doc:"ISO 639-1 codes of the languages to choose from (at least 2). Text in a language not listed gets the closest listed one, so restrict or raise min_confidence. In high accuracy each listed language costs up to about 40 MB of memory per process."`
	Accuracy      string        `yaml:"accuracy" enum:"high,low" default:"high" doc:"high uses 1- to 5-gram models, better on text under 120 letters; low uses trigrams only: about 20x less memory, and the same results on text of 120 letters or more."`
	MinDistance   float64       `yaml:"min_distance" doc:"Lingua's minimum relative distance, from 0 to 0.99: the output is null unless the top confidence exceeds the second by at least this much."`
	MinConfidence float64       `yaml:"min_confidence" doc:"The output is null unless the top confidence is at least this, from 0 to 1."`
	Pos           pipes.Pos     `yaml:"-" spec:"pos"`
}

var languageSpec = pipes.Spec{
	Summary: "Detects the natural language of a text (with lingua) and writes its ISO 639-1 code and confidence to fields.",
	Example: "text: message\noutput: lang\nconfidence: lang_confidence\nlanguages: [en, de, fr, es, it]\nmin_confidence: 0.5",
}
