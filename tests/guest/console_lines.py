"""The serial console of a guest running in a child process (QEMU or keel-vmm), read line by
line on a thread so tests can wait for a line with a timeout. Used by qemu_net_test.py and
tests/vmm/keel_vmm_net_test.py.
"""

import queue
import threading


class ConsoleLines:
    """Collects the lines of a text stream; `lines` holds every line returned so far."""

    def __init__(self, stream, timeout):
        self.lines = []
        self._timeout = timeout
        self._eof = False
        self._queue = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, prefix, timeout=None):
        """Collects output until a line starting with `prefix`; returns it (None at EOF).
        Raises queue.Empty when no line comes for `timeout` seconds."""
        while not self._eof:
            line = self._queue.get(timeout=self._timeout if timeout is None else timeout)
            if line is None:
                self._eof = True
                return None
            self.lines.append(line)
            if line.startswith(prefix):
                return line
        return None

    def drain(self):
        """Collects everything up to EOF (call once the process has exited)."""
        self.wait_for("\0")
