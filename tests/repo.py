"""What every test needs, wherever it is started from: the repository's root (on sys.path, so its modules import)
and its scripts run as a user runs them, with Ctrl-C working even when the suite itself was started with SIGINT
ignored (in the background of a script, or under nohup)."""
import contextlib
import io
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # an ignored SIGINT is inherited; Python then never raises Ctrl-C


def start_script(name, *args):
    """`python NAME ARGS` from the repository's root, as a running process with its output piped."""
    return subprocess.Popen([sys.executable, str(REPO / name), *map(str, args)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def run_script(name, *args, timeout=300):
    """`python NAME ARGS` to its end: a CompletedProcess with stdout and stderr."""
    proc = start_script(name, *args)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def call_main(main, *args):
    """MAIN(ARGS) in this process, as the interpreter would end it: a CompletedProcess with the exit code (a string
    passed to sys.exit is printed to stderr, exit code 1), stdout and stderr. Seconds faster than a new process."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def quiet_train(argv):
    """train.py's whole run in this process, its output swallowed; returns the metrics it wrote."""
    import train  # here: only the tests that train need it, and REPO must be on the path first

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return train.train(train.parse_args(argv))
