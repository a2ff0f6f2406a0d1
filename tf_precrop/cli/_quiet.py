"""Keeping TensorFlow's own log lines off the terminal (``tf-precrop`` without ``--verbose``)."""

import contextlib
import logging
import os
import sys

#: Python loggers TensorFlow and its converter write through.
_TF_LOGGERS = ("tensorflow", "absl", "h5py")


@contextlib.contextmanager
def native_stderr_silenced(enabled=True):
    """Points file descriptor 2 at ``/dev/null`` while keeping ``sys.stderr`` visible.

    TensorFlow, the MLIR/TFLite converter and LiteRT log from C++ straight to
    fd 2, whatever ``TF_CPP_MIN_LOG_LEVEL`` says (``I0000 ... cudart_stub.cc``,
    ``WARNING: All log messages before absl::InitializeLog()``, the XNNPACK
    delegate line). Inside this block fd 2 goes to ``/dev/null``; if
    ``sys.stderr`` wrote to fd 2 it is swapped for a stream on a duplicate of
    the original fd 2, so Python-level output (progress, warnings, errors) still
    shows. The duplicate is left open on purpose: a logging handler created
    inside the block may hold the stream and write to it later.
    """
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        writes_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        writes_fd2 = False  # a captured or replaced stream: it is not fd 2
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    old = sys.stderr
    if writes_fd2:
        sys.stderr = open(saved, "w", buffering=1, encoding=old.encoding, errors=old.errors, closefd=False)  # noqa: SIM115
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        finally:
            sys.stderr = old
            os.dup2(saved, 2)
            if not writes_fd2:
                os.close(saved)


def quiet_tensorflow():
    """TensorFlow's log switches, set before it is imported."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    for name in _TF_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
