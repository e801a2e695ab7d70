"""The parent's slow setup, done once before the fork: byte-compile the
project and build the cache its tests read (every prime below two million,
by a sieve, each checked again by trial division in plain Python: seconds
of CPU, which is the point of a setup worth not redoing)."""
import compileall
import json
import os
import time

started = time.time()
os.makedirs("/work/cache", exist_ok=True)
limit = 2_000_000
sieve = bytearray([1]) * limit
sieve[0:2] = b"\0\0"
for i in range(2, int(limit**0.5) + 1):
    if sieve[i]:
        sieve[i * i :: i] = bytearray(len(range(i * i, limit, i)))
primes = [i for i in range(limit) if sieve[i]]
for p in primes[-20000:]:
    assert all(p % d for d in range(2, int(p**0.5) + 1)), p
with open("/work/cache/primes.json", "w", encoding="utf-8") as f:
    json.dump(primes, f)
compileall.compile_dir("/work/project", quiet=1)
print(f"setup done in {time.time() - started:.1f} s")
