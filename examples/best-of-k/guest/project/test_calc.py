"""The project's tests: 12, two per function. The primes come from the cache setup.py built."""
import json
import unittest

import calc

with open("/work/cache/primes.json", encoding="utf-8") as f:
    PRIMES = set(json.load(f))


class CalcTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(calc.add(2, 3), 5)

    def test_add_negative(self):
        self.assertEqual(calc.add(-2, -3), -5)

    def test_mean(self):
        self.assertEqual(calc.mean([1, 2, 3]), 2)

    def test_mean_single(self):
        self.assertEqual(calc.mean([7]), 7)

    def test_clamp_inside(self):
        self.assertEqual(calc.clamp(5, 0, 10), 5)

    def test_clamp_outside(self):
        self.assertEqual((calc.clamp(-1, 0, 10), calc.clamp(11, 0, 10)), (0, 10))

    def test_fib(self):
        self.assertEqual([calc.fib(i) for i in range(7)], [0, 1, 1, 2, 3, 5, 8])

    def test_fib_large(self):
        self.assertEqual(calc.fib(30), 832040)

    def test_slug(self):
        self.assertEqual(calc.slug("Hello World"), "hello-world")

    def test_slug_trim(self):
        self.assertEqual(calc.slug("  A b  "), "a-b")

    def test_prime(self):
        self.assertTrue(calc.is_prime(999983, PRIMES))

    def test_not_prime(self):
        self.assertFalse(calc.is_prime(999981, PRIMES))
