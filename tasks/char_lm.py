"""Character-level language modelling on English text that ships with CPython, so it works
offline: the interactive help texts of ``pydoc_data.topics.topics`` (about 465 000
characters in Python 3.11), joined in sorted key order, one newline between topics.

The vocabulary is fixed - the 95 printable ASCII characters and the newline (96; 70 with
``lowercase``) - so that input_size does not change with the Python version; any other
character (tab, typographic quotes, ...) becomes '?'. The first 90 % of the characters are
the train text, the rest the val text. A batch is random windows of seq_len + 1 characters
of its split: inputs are the one-hot first seq_len, targets the next character at every step.
The text itself differs between Python versions, so compare losses within one version.
"""

from __future__ import annotations

import dataclasses
import functools
import string
from typing import TYPE_CHECKING

from sweeper.errors import SweeperInputError, require
from sweeper.task import Task, TaskBatch

from ._checks import flag, split_purpose

if TYPE_CHECKING:
    import torch

TRAIN_FRACTION = 0.9
UNKNOWN = "?"


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The cleaned text, its vocabulary, the text as class indices and the train/val cut."""

    text: str
    vocabulary: str
    codes: torch.Tensor  # (len(text),) int64
    split_at: int

    def part(self, split: str) -> tuple[int, int]:
        """[start, stop) of ``split`` in ``text``."""
        split_purpose(split)
        return (0, self.split_at) if split == "train" else (self.split_at, len(self.text))


def vocabulary(lowercase: bool = False) -> str:
    """The characters of the corpus, sorted: class i is the i-th (96; 70 when ``lowercase``)."""
    letters = string.ascii_lowercase if lowercase else string.ascii_letters
    return "".join(sorted(set(string.digits + letters + string.punctuation + " \n")))


@functools.lru_cache(maxsize=2)
def corpus(lowercase: bool = False) -> Corpus:
    """Build (once per process and case mode) the corpus; deterministic for a Python version."""
    import torch

    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # some distributions strip pydoc_data
        raise SweeperInputError("task 'char_lm' needs the pydoc_data package of the Python "
                                f"standard library, which this interpreter lacks: {exc}") from exc
    text = "\n".join(topics[key] for key in sorted(topics))
    characters = vocabulary(lowercase)
    if lowercase:
        text = text.lower()
    allowed = set(characters)
    text = "".join(c if c in allowed else UNKNOWN for c in text)
    index = {c: i for i, c in enumerate(characters)}
    codes = torch.tensor([index[c] for c in text], dtype=torch.int64)
    return Corpus(text, characters, codes, int(len(text) * TRAIN_FRACTION))


@dataclasses.dataclass(frozen=True)
class CharLM(Task):
    """Predict the next character of English text (cross-entropy at every step).

    Args:
        lowercase: lower-case the text first (vocabulary 70 instead of 96).
    """

    name = "char_lm"
    loss_kind = "cross_entropy"
    default_seq_len = 100
    lowercase: bool = False

    def __post_init__(self):
        flag(self.name, "lowercase", self.lowercase)

    @property
    def corpus(self) -> Corpus:
        return corpus(self.lowercase)

    @property
    def input_size(self) -> int:
        return len(vocabulary(self.lowercase))

    @property
    def output_size(self) -> int:
        return len(vocabulary(self.lowercase))

    def check_seq_len(self, seq_len):
        start, stop = self.corpus.part("val")  # the shorter split bounds the window
        require(1 <= seq_len < stop - start, f"task 'char_lm' needs 1 <= seq_len < "
                                             f"{stop - start} (val text), got seq_len={seq_len}")

    def _windows(self, gen: torch.Generator, split: str, count: int, steps: int) -> torch.Tensor:
        import torch

        start, stop = self.corpus.part(split)
        # Windows lie wholly inside the split, so train and val never share a character.
        first = torch.randint(start, stop - steps, (count,), generator=gen)
        return self.corpus.codes[first[:, None] + torch.arange(steps + 1)]

    def _one_hot(self, codes: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        return F.one_hot(codes, self.input_size).to(torch.float64)

    def inputs(self, seed, n_trajectories, steps):
        from sweeper.seeding import generator

        start, stop = self.corpus.part("train")
        require(steps < stop - start, f"task 'char_lm' can serve at most {stop - start - 1} "
                                      f"steps of train text, got steps={steps}")
        codes = self._windows(generator(seed, "task-inputs"), "train", n_trajectories, steps)
        return self._one_hot(codes[:, :-1])

    def batch(self, seed, split, batch_size, seq_len):
        import torch

        from sweeper.seeding import generator

        self.check_seq_len(seq_len)
        codes = self._windows(generator(seed, split_purpose(split)), split, batch_size, seq_len)
        mask = torch.ones(batch_size, seq_len, dtype=torch.bool)
        return TaskBatch(self._one_hot(codes[:, :-1]), codes[:, 1:].contiguous(), mask)
