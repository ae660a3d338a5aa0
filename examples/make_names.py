"""The names data set
==================

Generate fastnll/data/names.txt: 3000 made-up names for the bigram example.

The names are synthetic (syllables drawn with a fixed seed), so the data set has no licence
to respect and regenerates byte for byte:  python examples/make_names.py

With --check it writes nothing and compares what it generates with the file the installed
fastnll ships (the documentation's gallery runs it so).
"""
import argparse
import importlib.resources
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


def main(argv=None):
    p = argparse.ArgumentParser(description="Generate fastnll/data/names.txt (or check it).")
    p.add_argument("--check", action="store_true",
                   help="compare with the names.txt fastnll ships instead of writing it")
    args = p.parse_args(argv)
    names = make_names()
    text = "\n".join(names) + "\n"
    if args.check:
        shipped = importlib.resources.files("fastnll").joinpath("data/names.txt").read_text()
        if shipped != text:
            raise SystemExit("fastnll/data/names.txt differs from what make_names() generates")
        print(f"fastnll/data/names.txt regenerates byte for byte: {len(names)} names, "
              f"from {names[0]!r} to {names[-1]!r}")
        return
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "fastnll", "data", "names.txt")
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
