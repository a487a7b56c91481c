#!/usr/bin/python3
"""Writes the input CSV of the parallel pandas job: an id column and
mixed fields (numbers and words), seeded, `--rows` rows plus a header.

Usage: generate.py --rows 10000 --out input/10000.csv [--seed 0]"""

import argparse
import random
import sys

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
         "hotel", "india", "juliet", "kilo", "lima", "mike", "november")
HEADER = "id,name,city,age,income,balance,visits,rating,segment,note"


def rows(n, seed=0):
    rng = random.Random(seed)
    for i in range(n):
        yield ",".join([
            str(i), f"{rng.choice(WORDS)} {rng.choice(WORDS)}", rng.choice(WORDS),
            str(rng.randint(18, 90)), f"{rng.uniform(1e4, 2e5):.2f}",
            f"{rng.uniform(-5e3, 5e4):.2f}", str(rng.randint(0, 500)),
            f"{rng.random() * 5:.3f}", rng.choice("ABCDE"),
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))])


def write(path, n, seed=0):
    with open(path, "w") as f:
        f.write(HEADER + "\n")
        for line in rows(n, seed):
            f.write(line + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    write(args.out, args.rows, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
