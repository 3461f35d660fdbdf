"""Logging in Caffe's (glog's) line format, and a progress bar that stays out of logs.

Caffe logs through glog, and its tools read those logs back: `tools/extra/parse_log.py`
turns a training log into CSV tables of loss and accuracy, `extract_seconds.py` into
timings. Both read the glog line prefix, so minicaffe writes the same prefix:

    I1129 17:02:03.123456 12345 solver.py:228] Iteration 100 (7.24 iter/s, 13.8s/100 iters), loss = 0.31
    ^^^^^ ^^^^^^^^^^^^^^^ ^^^^^ ^^^^^^^^^^^^^
    level+MMDD  time (us)  thread  file:line of the call (ours, where glog has Caffe's .cpp)

Every module logs with the standard library (`logging.getLogger(__name__)`); importing
this module attaches one handler to the `minicaffe` logger that writes these lines to
stderr. Two departures from glog, both so the parsers never choke:

* a message of several lines gets the prefix on every line (parse_log.py reads the time
  of every line after the first "Iteration"; a bare continuation line would stop it);
* while a progress bar is on screen, lines go through `tqdm.write`, which clears the bar,
  prints the line and redraws the bar below it.

As with glog, `GLOG_minloglevel` (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL) hides lower levels.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
import threading

LOGGER_NAME = "minicaffe"

# glog's severity letters; Python's CRITICAL plays glog's FATAL.
_LETTER = {logging.DEBUG: "I", logging.INFO: "I", logging.WARNING: "W",
           logging.ERROR: "E", logging.CRITICAL: "F"}
_GLOG_LEVELS = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR, 3: logging.CRITICAL}

_active_bars = 0  # progress bars on screen; log lines must go around them


def glog_prefix(level: int, when: datetime.datetime, thread_id: int, where: str) -> str:
    """`I1129 17:02:03.123456 12345 solver.py:228] ` (glog pads the thread id to 5)."""
    letter = _LETTER.get(level, "I" if level < logging.WARNING else "E")
    return (f"{letter}{when:%m%d %H:%M:%S}.{when.microsecond:06d} "
            f"{thread_id:5d} {where}] ")


class GlogFormatter(logging.Formatter):
    """Formats a record as one or more glog lines."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created)
        where = getattr(record, "where", None) or f"{record.filename}:{record.lineno}"
        prefix = glog_prefix(record.levelno, when, getattr(record, "native_thread", os.getpid()), where)
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return "\n".join(prefix + line for line in (text.splitlines() or [""]))


class GlogHandler(logging.Handler):
    """Writes to whatever `sys.stderr` is at the time (so test capture and redirection work)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Formatting may happen later; the thread id must be the logging thread's.
        record.native_thread = threading.get_native_id()
        return super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if _active_bars:
                from tqdm import tqdm
                tqdm.write(line, file=sys.stderr)
            else:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
        except Exception:  # a logging failure must never stop training
            self.handleError(record)


def _level_from_env() -> int:
    try:
        return _GLOG_LEVELS.get(int(os.environ.get("GLOG_minloglevel", "0")), logging.INFO)
    except ValueError:
        return logging.INFO


def _install() -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, GlogHandler) for h in logger.handlers):
        handler = GlogHandler()
        handler.setFormatter(GlogFormatter())
        logger.addHandler(handler)
        logger.setLevel(_level_from_env())
        # Our handler prints; passing records on to the root would print them twice
        # once an application configures logging itself.
        logger.propagate = False
    return logger


_install()


def set_level(level) -> None:
    """Show records of `level` and above: a logging level, or glog's 0..3."""
    if isinstance(level, int) and level in _GLOG_LEVELS:
        level = _GLOG_LEVELS[level]
    logging.getLogger(LOGGER_NAME).setLevel(level)


def format_number(x: float) -> str:
    """A float as C++'s `ostream << x` prints it (6 significant digits, like %g)."""
    return f"{float(x):.6g}"


# ---------------------------------------------------------------- progress bar

class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass


def progress_enabled(stream=None) -> bool:
    """A bar only for a person watching a terminal: never in CI, pipes or log files."""
    stream = sys.stderr if stream is None else stream
    if os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def progress(total: int, desc: str = "", initial: int = 0, unit: str = "iter"):
    """A tqdm bar on stderr when it is a terminal, otherwise an object that does nothing.

    The bar is removed when the block ends (`leave=False`), so the terminal keeps only
    the log lines, exactly as they would appear in a log file.
    """
    global _active_bars
    if not progress_enabled():
        yield _NoBar()
        return
    from tqdm import tqdm
    bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False,
               file=sys.stderr, dynamic_ncols=True)
    _active_bars += 1
    try:
        yield bar
    finally:
        _active_bars -= 1
        bar.close()
