# sandbox.files against a tiny VM: text and byte round trips, mode, list,
# stat, exists, mkdir and remove, and a missing file as NotFoundError.
"""Files: read, write, list, stat, remove, mkdir."""

from __future__ import annotations

import unittest

from support import TINY_TAG, DaemonTestCase

from forkd import NotFoundError, Sandbox


class FilesTest(DaemonTestCase):
    """sandbox.files."""

    sandbox: Sandbox

    @classmethod
    def setUpClass(cls) -> None:
        cls.sandbox = cls.shared(TINY_TAG)

    def setUp(self) -> None:
        super().setUp()
        self.files = self.sandbox.files

    def test_text_and_bytes_round_trip(self) -> None:
        self.files.write("/root/deep/new/dir/hello.txt", "héllo wörld\n")
        self.assertEqual(self.files.read("/root/deep/new/dir/hello.txt"), "héllo wörld\n")
        blob = bytes(range(256)) * 64
        self.files.write("/root/blob.bin", blob)
        self.assertEqual(self.files.read("/root/blob.bin", "bytes"), blob)
        self.assertEqual(self.sandbox.commands.run("wc -c < /root/blob.bin").stdout.strip(), str(len(blob)))

    def test_mode_stat_list_exists(self) -> None:
        self.files.write("/root/tool.sh", "#!/bin/sh\necho ran\n", mode=0o755)
        entry = self.files.stat("/root/tool.sh")
        self.assertEqual((entry.name, entry.path, entry.type, entry.mode), ("tool.sh", "/root/tool.sh", "file", 0o755))
        self.assertEqual(entry.size, len("#!/bin/sh\necho ran\n"))
        self.assertGreater(entry.mtime_ms, 0)
        self.assertEqual(self.sandbox.commands.run("/root/tool.sh").stdout, "ran\n")
        self.files.mkdir("/root/listing/sub")
        self.files.write("/root/listing/a.txt", "a")
        listed = sorted((e.name, e.type, e.path) for e in self.files.list("/root/listing"))
        self.assertEqual(listed, [("a.txt", "file", "/root/listing/a.txt"), ("sub", "dir", "/root/listing/sub")])
        self.assertEqual(self.files.stat("/root/listing/sub").type, "dir")
        self.assertTrue(self.files.exists("/root/listing/a.txt"))
        self.assertFalse(self.files.exists("/root/listing/missing"))

    def test_remove_and_missing_files(self) -> None:
        self.files.write("/root/gone/inner/file.txt", "x")
        self.files.remove("/root/gone/inner/file.txt", recursive=False)
        self.assertFalse(self.files.exists("/root/gone/inner/file.txt"))
        self.files.remove("/root/gone")
        self.assertFalse(self.files.exists("/root/gone"))
        with self.assertRaises(NotFoundError) as caught:
            self.files.read("/root/gone/inner/file.txt")
        self.assertEqual((caught.exception.status, caught.exception.code), (404, "not_found"))


if __name__ == "__main__":
    unittest.main()
