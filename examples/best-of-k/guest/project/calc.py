"""A small library with four seeded bugs (the demo's agent has to find them)."""


def add(a, b):
    return a - b


def mean(xs):
    return sum(xs) / (len(xs) + 1)


def clamp(x, lo, hi):
    return max(lo, min(x, hi))


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return b


def slug(text):
    return text.strip().lower().replace(" ", "_")


def is_prime(n, table):
    return n in table
