#!/usr/bin/env python3
"""Writes N lines shaped like examples/example.data: `<uuid4> <words>` (values 20-120 bytes of lowercase
words), or with --value-bytes B, values of exactly B bytes. Deterministic for a given --seed.

usage: gen-data.py N OUT [--value-bytes B] [--seed S]
"""
import argparse
import random
import string
import uuid

p = argparse.ArgumentParser()
p.add_argument("n", type=int)
p.add_argument("out")
p.add_argument("--value-bytes", type=int, default=0)
p.add_argument("--seed", type=int, default=1)
a = p.parse_args()
rng = random.Random(a.seed)
letters = string.ascii_lowercase
with open(a.out, "w") as f:
    for _ in range(a.n):
        key = uuid.UUID(int=rng.getrandbits(128), version=4)
        if a.value_bytes:
            value = "".join(rng.choices(letters, k=a.value_bytes))
        else:
            words = [("".join(rng.choices(letters, k=rng.randint(2, 10)))) for _ in range(rng.randint(2, 11))]
            value = " ".join(words)
        f.write(f"{key} {value}\n")
