"""A child subreaper for a lab host's daemons: `subreaper.py COMMAND LOG`.

PID 1 on these machines reaps orphans only every ~2 s, and libvirt waits for an exited
QEMU to vanish before it runs the `stopped` hook: a migration's source stopped ~1.8 s
late. This process makes itself the subreaper (prctl PR_SET_CHILD_SUBREAPER), runs
COMMAND (which starts virtlogd and libvirtd, both daemonising), exits in the foreground
with COMMAND's status, and stays behind in the background reaping every orphan of the
daemons the moment SIGCHLD arrives. `lab down` ends it with the lab's other processes.
Run by path: stdlib only.
"""

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def main(command: str, log: str) -> int:
    read_end, write_end = os.pipe()
    if os.fork():  # the foreground: report COMMAND's status
        os.close(write_end)
        status = os.read(read_end, 16)
        return int(status) if status.strip() else 1
    os.close(read_end)
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        os.write(write_end, b"1")
        return 1
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    rc = subprocess.run([command]).returncode
    os.write(write_end, str(rc).encode())
    os.close(write_end)
    while True:
        signal.sigwait({signal.SIGCHLD})
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
