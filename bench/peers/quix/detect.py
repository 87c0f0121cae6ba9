"""Quix Streams peer of W4 (issue 16): the language of each text record,
exactly once.

Usage: python detect.py BROKERS INPUT OUTPUT GROUP RECORDS

Adds "lang" (ISO 639-1, or null when lingua has no reliable answer) and
"lang_confidence" (the top confidence) to each record, with lingua-py
(PyPI lingua-language-detector, the Rust-backed port of lingua-go by the
same author) over W4's eight languages in high accuracy, its models
loaded before the app starts. One pass per record,
compute_language_confidence_values, with detect_language_of's rule for
the answer (no language when the top two values are equal), as the Go
systems do. Quix Streams' dataframe applies the function to one record at
a time. Timed and stopped as filtermap.py: from the first record detected
until the group's committed offsets reach the end of the input; prints
the result line of peerrun.py.
"""

import sys

from lingua import IsoCode639_1, LanguageDetectorBuilder
from peerrun import Peer

W4_LANGUAGES = ["CS", "DE", "EN", "ES", "IT", "PL", "PT", "RU"]


def detector():
    codes = [getattr(IsoCode639_1, c) for c in W4_LANGUAGES]
    return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_preloaded_language_models().build()


def main():
    brokers, input_topic, output_topic, group, records = sys.argv[1:6]
    det = detector()
    peer = Peer(brokers, group)
    src = peer.app.topic(input_topic, key_deserializer="bytes", value_deserializer="json")
    dst = peer.app.topic(output_topic, key_serializer="bytes", value_serializer="json")

    def detect(rec):
        peer.first()
        vals = det.compute_language_confidence_values(rec["text"])
        top = vals[0]
        rec["lang"] = None if top.value == vals[1].value else top.language.iso_code_639_1.name.lower()
        rec["lang_confidence"] = top.value
        return rec

    sdf = peer.app.dataframe(src)
    sdf = sdf.apply(detect)
    sdf.to_topic(dst)
    peer.run([input_topic], end=int(records))


if __name__ == "__main__":
    main()
