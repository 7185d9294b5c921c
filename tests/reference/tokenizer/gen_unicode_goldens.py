#!/usr/bin/python3
"""Writes tests/fixtures/tokenizer/unicode_normalization.json: strings with their NFC, NFD, NFKC,
NFKD and (char-by-char, Rust-style) lowercase forms according to Python's unicodedata, the
independent reference for src/tokenizer/unicode.cpp.

Every code point that has a decomposition, a non-zero combining class, or takes part in a
composition appears in at least one string, mixed with base letters, Hangul jamo and marks in
random orders (so canonical reordering, blocking and Hangul composition are exercised).

Regenerate: /usr/bin/python3 tests/reference/tokenizer/gen_unicode_goldens.py
"""
import json
import os
import random
import unicodedata as ud

OUT = os.path.join(os.path.dirname(__file__), "../../fixtures/tokenizer/unicode_normalization.json")


def interesting():
    cps = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        if ud.combining(c) or ud.decomposition(c) or c.lower() != c:
            cps.append(cp)
    return cps


def main():
    rng = random.Random(20241124)
    pool = interesting()
    rng.shuffle(pool)
    fillers = [ord(c) for c in "aeiouAEOU \u1100\u1161\u11a8\uac00\u0301\u0308\u0323\u031b\u0345"]
    cases = []
    # Targeted cases: reordering, blocking, singletons, Hangul, exclusions, Greek sigma.
    for s in ["", "abc", "e\u0301", "A\u030a", "\u212b", "\u0041\u0323\u0302", "\u0041\u0302\u0323",
              "\u1100\u1161\u11a8", "\uac00\u11a8", "\u0958", "\u1e9b\u0323", "\u0344", "a\u0301\u0301",
              "\u0061\u05ae\u0300\u0301\u0315\u0062", "\u03a3\u03a3", "\u0130", "\ufb01", "\u2460",
              "\U0001d15e", "\u0f73", "\u0300a", "\u1161\u11a8"]:
        cases.append(s)
    # Every interesting code point, in groups of 1-3, surrounded by random fillers.
    i = 0
    while i < len(pool):
        n = rng.randint(1, 3)
        chunk = pool[i:i + n]
        i += n
        s = [rng.choice(fillers) for _ in range(rng.randint(0, 2))] + chunk
        s += [rng.choice(fillers) for _ in range(rng.randint(0, 2))]
        rng.shuffle(s)
        cases.append("".join(chr(c) for c in s))
    out = {
        "unicode_version": ud.unidata_version,
        "cases": [[s, ud.normalize("NFC", s), ud.normalize("NFD", s), ud.normalize("NFKC", s),
                   ud.normalize("NFKD", s), "".join(c.lower() for c in s)] for s in cases],
    }
    with open(OUT, "w", encoding="utf-8") as f:
        f.write('{"unicode_version": "%s", "fields": ["input", "nfc", "nfd", "nfkc", "nfkd", "lower"], '
                '"cases": [\n' % out["unicode_version"])
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in out["cases"]))
        f.write("\n]}\n")
    print(len(cases), "cases")


main()
