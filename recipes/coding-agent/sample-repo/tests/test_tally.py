import pathlib
import subprocess
import unittest

TALLY = pathlib.Path(__file__).resolve().parent.parent / "tally"


def tally(text):
    out = subprocess.run([str(TALLY)], input=text.encode(), capture_output=True, check=True)
    return tuple(int(x) for x in out.stdout.split())


class TallyTest(unittest.TestCase):
    def test_empty(self):
        self.assertEqual(tally(""), (0, 0, 0))

    def test_words_and_lines(self):
        self.assertEqual(tally("one two\nthree\n"), (2, 3, 14))

    def test_runs_of_spaces(self):
        self.assertEqual(tally("  a \t b  "), (0, 2, 9))


if __name__ == "__main__":
    unittest.main()
