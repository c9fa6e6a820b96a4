"""The built-in tasks of rnn-sweeper, installed as ``rnn_sweeper_tasks``.

Each registers by name under the entry-point group ``rnn_sweeper.tasks`` (pyproject.toml), so
``sweeper.task.get_task("noise")`` finds it without sweeper importing this package. The
contract they implement is :class:`sweeper.task.Task`. Their modules import torch only in
the methods that make tensors: building a task (what validating a search space does) loads
no torch.
"""

from __future__ import annotations

from .adding import Adding
from .chaotic_lstm import ChaoticLSTM
from .char_lm import CharLM
from .copy_memory import CopyMemory
from .noise import Noise
from .sine_generator import SineGenerator
from .teacher import Teacher
from .temporal_order import TemporalOrder

__all__ = ["Adding", "ChaoticLSTM", "CharLM", "CopyMemory", "Noise", "SineGenerator", "Teacher",
           "TemporalOrder"]
