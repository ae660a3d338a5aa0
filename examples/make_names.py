"""The names data set
==================

Generate fastnll/data/names.txt: 3000 made-up names for the bigram example.

The names are synthetic (syllables drawn with a fixed seed), so the data set has no licence
to respect and regenerates byte for byte:  python examples/make_names.py
"""
import os

import numpy as np

ONSETS = ["", "b", "br", "c", "ch", "d", "dr", "f", "g", "gr", "h", "j", "k", "kr", "l", "m",
          "n", "p", "r", "s", "sh", "st", "t", "th", "tr", "v", "w", "y", "z"]
VOWELS = ["a", "e", "i", "o", "u", "a", "e", "i", "ai", "ea", "io", "y", "ou"]
CODAS = ["", "", "", "n", "l", "r", "s", "th", "x", "m", "nd", "rt", "ck"]
ENDINGS = ["", "", "a", "e", "ie", "o", "an", "en", "ia", "us", "ella", "ton", "ra"]


def make_names(n=3000, seed=2024):
    rng = np.random.default_rng(seed)
    names = set()
    while len(names) < n:
        parts = []
        for _ in range(rng.integers(1, 4)):
            parts += [rng.choice(ONSETS), rng.choice(VOWELS), rng.choice(CODAS)]
        name = "".join(parts) + rng.choice(ENDINGS)
        if 3 <= len(name) <= 10:
            names.add(name)
    return sorted(names)


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "fastnll", "data", "names.txt")
    with open(path, "w") as f:
        f.write("\n".join(make_names()) + "\n")
    print(f"wrote {path}")
