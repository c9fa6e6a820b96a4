"""The progress line and the packing of sweep trials into Tune trials: pure pieces of the
driver, checked without services."""

from __future__ import annotations

import io

from sweeper.adapters.batches import BATCHES_PER_SLOT, pack
from sweeper.space import validate_space
from sweeper.sweep import Progress

SPACE = {"name": "p", "task": "noise", "cell": "rnn_tanh", "hidden_size": 4, "seq_len": 10,
         "axes": {"recurrent_scale": [0.5, 2.0], "input_scale": {"linspace": [0.1, 2.0, 7]},
                  "seed": list(range(11))},
         "vectorize": ["recurrent_scale"], "metrics": ["lyapunov"]}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_pack_deals_every_trial_once_into_a_few_batches_per_slot():
    trials = validate_space(SPACE).trials()
    assert len(trials) == 77
    for slots in (1, 2, 16, 100):
        batches = pack(trials, slots)
        assert len(batches) == min(77, slots * BATCHES_PER_SLOT)
        dealt = [t.trial_id for batch in batches for t in batch]
        assert sorted(dealt) == sorted(t.trial_id for t in trials)
        sizes = [len(b) for b in batches]
        assert max(sizes) - min(sizes) <= 1  # round robin: even batches
    assert pack(trials[:3], 2) == [[trials[0]], [trials[1]], [trials[2]]]


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_sees_notes_at_once_and_time_passing_inside_a_long_trial():
    stream, clock = Terminal(), Clock()
    progress = Progress(100, stream=stream, clock=clock, ticker=False)
    progress.note("workers", "starting Ray")
    assert stream.getvalue().endswith("0/100 points, 0 failed trials, 0s elapsed, ETA ?, "
                                      "starting Ray   ")
    progress.note("workers", None)
    progress.update(points=40)
    assert "\r40/100 points, 0 failed trials" in stream.getvalue()
    assert "starting Ray" not in stream.getvalue().rsplit("\r", 1)[1]
    drawn = stream.getvalue().count("\r")
    for _ in range(4):  # no trial ends: each second's tick still redraws the line
        clock.now += 1.0
        progress.tick()
    assert stream.getvalue().count("\r") == drawn + 4
    assert stream.getvalue().endswith("\r40/100 points, 0 failed trials, 4s elapsed, ETA 6s   ")
    progress.close()
    assert stream.getvalue().endswith("\n")


def test_the_ticker_ticks_every_second_on_a_terminal_and_stops_on_close():
    progress = Progress(100, stream=Terminal())
    assert progress.interval == 1.0 and progress._ticker.is_alive()
    progress.close()
    assert not progress._ticker.is_alive()  # joined: no redraw after the closing line


def test_a_log_gets_whole_lines_at_most_every_quiet_interval():
    stream, clock = io.StringIO(), Clock()
    progress = Progress(1000, stream=stream, quiet_s=3600, clock=clock, ticker=False)
    for i in range(500):
        progress.update(points=1)
        progress.note("tracking", f"opening runs {i + 1}/500")
    progress.note("tracking", "tracking ready")
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    # The first report, the note as it appeared, and the closing line: not one line per
    # trial, nor one per change of a count in a note.
    assert len(lines) == 3, lines
    assert lines[0].startswith("1/1000 points")
    assert lines[1].startswith("1/1000 points") and lines[1].endswith("opening runs 1/500")
    assert lines[-1].startswith("500/1000 points, 0 failed trials")


def test_a_log_ticks_a_line_only_once_the_quiet_interval_has_passed():
    stream, clock = io.StringIO(), Clock()
    progress = Progress(10, stream=stream, quiet_s=30, clock=clock, ticker=False)
    progress.update(points=2)
    clock.now = 29.0
    progress.tick()
    assert stream.getvalue().splitlines() == ["2/10 points, 0 failed trials, 0s elapsed, ETA ?"]
    clock.now = 30.0
    progress.tick()
    assert stream.getvalue().splitlines()[-1] == ("2/10 points, 0 failed trials, 30s elapsed, "
                                                   "ETA 120s")
