#!/usr/bin/env python3
"""keelctl as a process, without a keeld: exit statuses and the one-line failure messages.

    keelctl_cli_test.py KEELCTL [unittest options]
"""

import os
import socket
import subprocess
import sys
import tempfile
import unittest

KEELCTL = None


def keelctl(*args, env=None):
    e = {k: v for k, v in os.environ.items() if k != "KEEL_SOCKET"}
    e.update(env or {})
    return subprocess.run([KEELCTL, *args], capture_output=True, text=True, timeout=30, env=e)


class KeelctlCliTest(unittest.TestCase):
    def assert_one_line_failure(self, r, status, *needles):
        self.assertEqual(r.returncode, status, r.stderr)
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertTrue(lines[0].startswith("keelctl: "), lines[0])
        for n in needles:
            self.assertIn(n, lines[0])
        self.assertEqual(r.stdout, "")

    def test_help(self):
        r = keelctl("help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("vm create NAME --kernel PATH", r.stdout)
        self.assertEqual(keelctl().returncode, 0)

    def test_usage_error_exits_2(self):
        self.assert_one_line_failure(keelctl("vm", "create", "a"), 2, "--kernel PATH is required")
        self.assert_one_line_failure(keelctl("vm", "frob"), 2, "unknown command")

    def test_missing_socket_names_the_path(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "keel.sock")
            self.assert_one_line_failure(keelctl("--socket", path, "vm", "list"), 3, path,
                                         "keeld is not running")
            # KEEL_SOCKET is used when there is no --socket.
            self.assert_one_line_failure(keelctl("host", env={"KEEL_SOCKET": path}), 3, path)

    def test_socket_nobody_listens_on(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "dead.sock")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.close()  # the file stays, nothing listens: ECONNREFUSED
            self.assert_one_line_failure(keelctl("--socket", path, "host"), 3, path,
                                         "Connection refused", "keeld is not running")

    def test_peer_that_hangs_up(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "rude.sock")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.listen(1)
            p = subprocess.Popen([KEELCTL, "--socket", path, "host"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            conn, _ = s.accept()
            conn.close()
            s.close()
            out, err = p.communicate(timeout=30)
            self.assertEqual(p.returncode, 3, err)
            self.assertEqual(len(err.splitlines()), 1, err)
            self.assertIn("keelctl: lost the connection to keeld at " + path, err)


if __name__ == "__main__":
    KEELCTL = os.path.abspath(sys.argv[1])
    unittest.main(argv=sys.argv[:1] + sys.argv[2:], verbosity=2)
