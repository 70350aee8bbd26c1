"""Final answers in model text, and math-verify checks that are bounded in time on any thread.

    check_answer("\\frac{1}{2}", "0.5", timeout_s=5.0)   # True

math-verify (`verify(parse(gold), parse(pred))`, gold first: the comparison is not symmetric)
bounds its own work with SIGALRM, which only works on the main thread; Ray actors and
`asyncio.to_thread` call from other threads. So its internal timeouts are switched off
(`parsing_timeout=None`, `timeout_seconds=None`) and every check that is not a plain number
runs in a small pool of checker processes instead (plain `python -c` subprocesses speaking
JSON lines, so they do not depend on the caller's `__main__`). A check that does not answer
within `timeout_s` returns False and is counted in `checker_stats().timeouts`; its process is
killed and the next check starts a fresh one, so a hostile answer such as `2^{10000000000}`
(minutes of sympy work) costs at most `timeout_s` and never hangs the caller.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------- answers in model text

# `\boxed{...}`, or LaTeX's brace-less `\boxed 9` (one character: group 1).
_BOXED = re.compile(r"\\(?:boxed|fbox)(?:\s*\{|\s+([^\s{}\\$]))")
_STATED = re.compile(r"the (?:final )?answer is[:\s]*", re.IGNORECASE)
_HASHES = re.compile(r"####\s*")
_NUMBER_IN_TEXT = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` in `text` (braces balanced), or None."""
    for m in reversed(list(_BOXED.finditer(text))):
        if m.group(1):
            return m.group(1)
        depth, start = 1, m.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
    return None


def states_answer(step: str) -> bool:
    """True when the step states a final answer: `The answer is`, `\\boxed{` or `####`."""
    return bool(_BOXED.search(step) or _STATED.search(step) or "####" in step)


def stated_answer(step: str) -> str | None:
    """The final answer a step states, or None.

    Order: the last balanced `\\boxed{...}`; else the rest of the line after the last
    `The answer is`; else the rest of the line after the last `####`. Surrounding `$`,
    whitespace and a closing period are dropped.
    """
    boxed = last_boxed(step)
    if boxed is not None:
        return boxed or None
    for pattern in (_STATED, _HASHES):
        matches = list(pattern.finditer(step))
        if matches:
            rest = step[matches[-1].end():].split("\n", 1)[0]
            rest = rest.strip().rstrip(".").strip().strip("$").strip()
            return rest or None
    return None


def last_number(text: str) -> str | None:
    """The last number in `text` with thousands commas removed ("16 - 3 = 13 eggs." -> "13")."""
    matches = _NUMBER_IN_TEXT.findall(text)
    return matches[-1].replace(",", "") if matches else None


def first_number(text: str) -> str | None:
    """The first number in `text` with thousands commas removed ("$1,200." -> "1200")."""
    m = _NUMBER_IN_TEXT.search(text)
    return m.group(0).replace(",", "") if m else None


# ---------------------------------------------------------------------- fast path

_PLAIN_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _plain_number(text: str) -> Decimal | None:
    text = text.strip().removeprefix("\\$").removeprefix("$").strip()
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    if not _PLAIN_NUMBER.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def fast_check(pred: str, gold: str) -> bool | None:
    """The verdict for plain numbers without math-verify, or None when math-verify must decide.

    Equal plain numbers are a match; two different integers are not. Different decimals
    go to math-verify, which compares them with rounding.
    """
    p, g = _plain_number(pred), _plain_number(gold)
    if p is None or g is None:
        return None
    if p == g:
        return True
    if p == p.to_integral_value() and g == g.to_integral_value():
        return False
    return None


# ---------------------------------------------------------------------- math-verify


def verify_answer(pred: str, gold: str) -> bool:
    """math-verify's verdict with its SIGALRM timeouts off; runs inside a checker process.

    Both answers are read as the content of `\\boxed{}` (so bare LaTeX such as `\\frac12`
    parses), falling back to math-verify's free-text extraction.
    """
    from math_verify import parse, verify

    def read(text: str) -> list:
        return parse(f"\\boxed{{{text}}}", parsing_timeout=None) or parse(text, parsing_timeout=None)

    gold_parsed, pred_parsed = read(gold), read(pred)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def serve(compare_name: str) -> None:
    """A checker process: read JSON [pred, gold] lines on stdin, answer JSON true/false lines.

    `compare_name` is "module:function". Stray prints go to stderr, so that only answers
    reach the parent; the process exits when stdin closes or the parent dies.
    """
    module, _, name = compare_name.partition(":")
    compare = getattr(importlib.import_module(module), name)
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout disabled" warnings
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        compare("0.5", "\\frac{1}{2}")  # import and warm up before the first timed check
    except Exception:
        pass
    answers.write("\"ready\"\n")
    answers.flush()
    for line in sys.stdin:
        try:
            pred, gold = json.loads(line)
            ok = bool(compare(pred, gold))
        except Exception:
            ok = False
        answers.write(json.dumps(ok) + "\n")
        answers.flush()


def _exit_with_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(0)  # the parent is gone: stop even in the middle of a hung check


class _Worker:
    """One checker process with pipes to its stdin and stdout."""

    def __init__(self, compare_name: str):
        path = os.pathsep.join(p for p in sys.path if p)  # the parent's imports, tests included
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from restmcts.tasks.checking import serve; import sys; serve(sys.argv[1])",
             compare_name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path})
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self._poll = select.poll()  # not select(): it fails on descriptors >= 1024 (busy Ray workers)
        self._poll.register(self.stdout, select.POLLIN)

    def send(self, message: object) -> None:
        self.stdin.write((json.dumps(message) + "\n").encode())
        self.stdin.flush()

    def receive(self, timeout_s: float) -> object:
        """The next answer; raises TimeoutError, or EOFError when the process died."""
        if not self._poll.poll(timeout_s * 1000):
            raise TimeoutError
        line = self.stdout.readline()  # one answer in flight at a time: nothing else is buffered
        if not line:
            raise EOFError(f"checker process exited with code {self.process.poll()}")
        return json.loads(line)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=5)
        self.stdin.close()
        self.stdout.close()


@dataclass
class CheckStats:
    """Counts of one checker's work. A timeout or failure is a check that returned False."""

    checks: int = 0  # all checks, fast path included
    fast: int = 0  # decided without math-verify
    timeouts: int = 0  # math-verify did not answer within timeout_s
    failures: int = 0  # a checker process could not start or died


class AnswerChecker:
    """A pool of up to `max_workers` checker processes, started on first use.

    `compare(pred, gold)` runs in the checker processes; it must be importable by name
    (a module-level function). Thread-safe. `close()` stops the idle processes; all of them
    also stop when this process exits (an idle one sees its stdin close, a busy one notices
    within a second that its parent is gone).
    """

    def __init__(self, max_workers: int = 2, compare: Callable[[str, str], bool] = verify_answer,
                 start_timeout_s: float = 120.0):
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        if compare.__module__ == "__main__" or "<" in compare.__qualname__:
            raise ValueError("compare must be a module-level function importable by name")
        self._compare_name = f"{compare.__module__}:{compare.__qualname__}"
        self.start_timeout_s = start_timeout_s
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._live = 0  # started workers, idle or busy
        self._stats = CheckStats()

    def stats(self) -> CheckStats:
        with self._cond:
            return replace(self._stats)

    def _count(self, **fields: int) -> None:
        with self._cond:
            for name, n in fields.items():
                setattr(self._stats, name, getattr(self._stats, name) + n)

    def check(self, pred: str | None, gold: str, timeout_s: float) -> bool:
        """True when `pred` matches `gold`. Never raises; returns within about `timeout_s`
        once a checker process is free (starting one is not counted against it)."""
        self._count(checks=1)
        if pred is None or not pred.strip() or not gold.strip():
            return False
        verdict = fast_check(pred, gold)
        if verdict is not None:
            self._count(fast=1)
            return verdict
        try:
            worker = self._acquire()
        except Exception as err:  # a check never raises
            self._count(failures=1)
            log.warning("answer check: could not start a checker process: %s", err)
            return False
        healthy = False
        try:
            worker.send([pred, gold])
            verdict = bool(worker.receive(timeout_s))
            healthy = True
            return verdict
        except TimeoutError:
            self._count(timeouts=1)
            log.warning("answer check timed out after %.1fs (answer %.80r); counted as wrong", timeout_s, pred)
            return False
        except (EOFError, OSError, ValueError) as err:
            self._count(failures=1)
            log.warning("answer check: checker process failed (%s); counted as wrong", err)
            return False
        finally:
            self._release(worker, healthy)

    def check_many(self, pairs: Sequence[tuple[str | None, str]], timeout_s: float) -> list[bool]:
        """`check` over (pred, gold) pairs, using every checker process at once."""
        if len(pairs) <= 1 or self.max_workers <= 1:
            return [self.check(p, g, timeout_s) for p, g in pairs]
        with ThreadPoolExecutor(self.max_workers) as pool:
            return list(pool.map(lambda pg: self.check(pg[0], pg[1], timeout_s), pairs))

    def close(self) -> None:
        """Stop the idle checker processes (busy ones stop when their check returns)."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._live -= len(idle)
            self._cond.notify_all()
        for worker in idle:
            worker.kill()

    def _acquire(self) -> _Worker:
        with self._cond:
            while not self._idle and self._live >= self.max_workers:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._live += 1
        try:
            return self._start()
        except BaseException:
            with self._cond:
                self._live -= 1
                self._cond.notify()
            raise

    def _start(self) -> _Worker:
        worker = _Worker(self._compare_name)
        try:
            greeting = worker.receive(self.start_timeout_s)
        except TimeoutError:
            problem = f"not ready within {self.start_timeout_s:.0f}s"
        except (EOFError, OSError, ValueError) as err:
            problem = str(err)
        else:
            if greeting == "ready":
                return worker
            problem = f"unexpected greeting {greeting!r}"
        worker.kill()
        raise RuntimeError(f"checker process did not start: {problem}")

    def _release(self, worker: _Worker, healthy: bool) -> None:
        with self._cond:
            if healthy:
                self._idle.append(worker)
            else:
                self._live -= 1
            self._cond.notify()
        if not healthy:
            worker.kill()  # a hung or dead process; the next check starts a fresh one


# ---------------------------------------------------------------------- one checker per process

_default: AnswerChecker | None = None
_default_pid = 0
_default_lock = threading.Lock()


def default_checker() -> AnswerChecker:
    """This process's shared checker (a forked child gets its own, not its parent's)."""
    global _default, _default_pid
    with _default_lock:
        if _default is None or _default_pid != os.getpid():
            _default, _default_pid = AnswerChecker(), os.getpid()
        return _default


def check_answer(pred: str | None, gold: str, timeout_s: float = 5.0) -> bool:
    """True when the predicted answer matches the gold one; False on a timeout. Never raises."""
    return default_checker().check(pred, gold, timeout_s)


def check_answers(pairs: Sequence[tuple[str | None, str]], timeout_s: float = 5.0) -> list[bool]:
    """`check_answer` over (pred, gold) pairs."""
    return default_checker().check_many(pairs, timeout_s)


def checker_stats() -> CheckStats:
    """Counts of this process's checks so far (timeouts and failures returned False)."""
    return default_checker().stats()
