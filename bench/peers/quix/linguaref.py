"""lingua-py run outside any pipeline: W4's reference answers for the
Python peers (issue 16), whose library is not the Go systems' lingua-go.

Usage: python linguaref.py < texts.jsonl > answers.jsonl

Each input line is a JSON string (a text); each output line is [lang,
confidence] for it, in order: lang is the ISO 639-1 code of
detect_language_of (null: no reliable answer) and confidence the top of
compute_language_confidence_values, over W4's eight languages in high
accuracy (lingua's default), the models loaded up front. The library's
own two calls, each on every core, so that a peer's single pass (the top
two values) is checked against them.
"""

import json
import sys

from lingua import IsoCode639_1, LanguageDetectorBuilder

W4_LANGUAGES = ["CS", "DE", "EN", "ES", "IT", "PL", "PT", "RU"]


def main():
    texts = [json.loads(line) for line in sys.stdin]
    codes = [getattr(IsoCode639_1, c) for c in W4_LANGUAGES]
    det = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_preloaded_language_models().build()
    langs = det.detect_languages_in_parallel_of(texts)
    values = det.compute_language_confidence_values_in_parallel(texts)
    out = sys.stdout
    for lang, vals in zip(langs, values):
        code = None if lang is None else lang.iso_code_639_1.name.lower()
        out.write(json.dumps([code, vals[0].value]) + "\n")


if __name__ == "__main__":
    main()
