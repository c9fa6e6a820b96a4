"""The supervised benchmark tasks: temporal_order, copy_memory, adding, char_lm."""

from __future__ import annotations

import math

import pytest
import torch

from rnn_sweeper_tasks.char_lm import corpus
from sweeper import CELLS, SweeperInputError
from sweeper.measure import build_params
from sweeper.model import init_readout, outputs, task_loss
from sweeper.task import get_task, task_names

F64 = torch.float64
NAMES = ["temporal_order", "copy_memory", "adding", "char_lm"]


@pytest.mark.parametrize("name", NAMES)
def test_batch_shapes_dtypes_and_determinism(name):
    task = get_task(name)
    assert type(task).name == name
    seq_len = task.default_seq_len
    task.check_seq_len(seq_len)
    b = task.batch(seed=0, split="train", batch_size=8, seq_len=seq_len)
    assert b.inputs.shape == (8, seq_len, task.input_size) and b.inputs.dtype == F64
    if task.loss_kind == "cross_entropy":
        assert b.targets.shape == (8, seq_len) and b.targets.dtype == torch.int64
        assert 0 <= b.targets.min() and b.targets.max() < task.output_size
    else:
        assert b.targets.shape == (8, seq_len, task.output_size) and b.targets.dtype == F64
    assert b.mask.shape == (8, seq_len) and b.mask.dtype == torch.bool and b.mask.any()

    again = task.batch(seed=0, split="train", batch_size=8, seq_len=seq_len)
    for x, y in [(b.inputs, again.inputs), (b.targets, again.targets), (b.mask, again.mask)]:
        assert torch.equal(x, y)
    for other in [task.batch(1, "train", 8, seq_len), task.batch(0, "val", 8, seq_len)]:
        assert not torch.equal(b.inputs, other.inputs)

    u = task.inputs(0, 2, seq_len)
    assert u.shape == (2, seq_len, task.input_size) and u.dtype == F64
    assert torch.equal(u, task.inputs(0, 2, seq_len))
    assert not torch.equal(u, task.inputs(1, 2, seq_len))
    # The dynamics metrics ask for other lengths (burn-in + seq_len, or very short runs).
    assert task.inputs(0, 2, 3).shape == (2, 3, task.input_size)


def test_temporal_order_labels_match_the_symbols_in_the_inputs():
    task = get_task("temporal_order")
    b = task.batch(seed=3, split="train", batch_size=256, seq_len=task.default_seq_len)
    symbols = b.inputs.argmax(-1)
    assert torch.equal(b.inputs.sum(-1), torch.ones(256, task.default_seq_len, dtype=F64))
    assert torch.equal(b.mask[:, -1], torch.ones(256, dtype=torch.bool))
    assert b.mask[:, :-1].sum() == 0
    for row in range(256):
        steps = torch.nonzero(symbols[row] < 2).flatten().tolist()
        assert len(steps) == 2
        first, second = steps
        assert task.t1_lo <= first < task.t1_hi and task.t2_lo <= second < task.t2_hi
        order = 2 * symbols[row, first] + symbols[row, second]  # XX, XY, YX, YY
        assert b.targets[row, -1] == order
    assert set(b.targets[:, -1].tolist()) == {0, 1, 2, 3}
    assert task.chance() == 0.25


def test_copy_memory_recalls_the_first_symbols_after_the_go_marker():
    task = get_task("copy_memory", {"n_symbols": 6, "length": 4})
    seq_len = 25
    b = task.batch(seed=2, split="val", batch_size=64, seq_len=seq_len)
    assert task.input_size == 8 and task.output_size == 7
    symbols = b.inputs.argmax(-1)
    assert torch.equal(b.inputs.sum(-1), torch.ones(64, seq_len, dtype=F64))
    blank, go = 6, 7
    assert (symbols[:, :4] < 6).all()
    assert torch.equal(b.targets[:, -4:], symbols[:, :4])
    go_steps = torch.nonzero(symbols == go)
    assert torch.equal(go_steps[:, 1], torch.full((64,), seq_len - 4 - 1))
    assert (symbols[:, 4:seq_len - 5] == blank).all() and (symbols[:, -4:] == blank).all()
    assert (b.targets[:, :-4] == blank).all()
    assert torch.equal(b.mask, torch.arange(seq_len).expand(64, -1) >= seq_len - 4)
    assert task.chance() == pytest.approx(1 / 6)


def test_adding_target_is_the_sum_of_the_marked_values():
    task = get_task("adding")
    seq_len = 50
    b = task.batch(seed=5, split="train", batch_size=128, seq_len=seq_len)
    values, marker = b.inputs[..., 0], b.inputs[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert torch.equal(marker.sum(-1), torch.full((128,), 2.0, dtype=F64))
    assert torch.equal(marker[:, :25].sum(-1), torch.ones(128, dtype=F64))
    assert torch.equal(b.targets[:, -1, 0], (values * marker).sum(-1))
    assert (b.targets[:, :-1] == 0).all()
    assert b.mask[:, -1].all() and b.mask.sum() == 128
    assert task.chance() is None


def _decode(task, one_hot_or_codes):
    vocabulary = task.corpus.vocabulary
    codes = one_hot_or_codes.argmax(-1) if one_hot_or_codes.dim() == 2 else one_hot_or_codes
    return "".join(vocabulary[i] for i in codes.tolist())


def test_char_lm_windows_are_real_text_of_their_split():
    task = get_task("char_lm")
    data = corpus(False)
    assert task.input_size == task.output_size == len(data.vocabulary) == 96
    assert data.split_at == int(0.9 * len(data.text))
    assert set(data.text) <= set(data.vocabulary)
    assert "function" in data.text and "class" in data.text  # English text about Python
    train_text, val_text = data.text[:data.split_at], data.text[data.split_at:]
    for split, text in [("train", train_text), ("val", val_text)]:
        b = task.batch(seed=0, split=split, batch_size=16, seq_len=100)
        assert b.mask.all()
        for row in range(16):
            window = _decode(task, b.inputs[row])
            following = _decode(task, b.targets[row])
            assert window[1:] == following[:-1]  # targets are the inputs shifted by one
            assert window + following[-1] in text
    lower = get_task("char_lm", {"lowercase": True})
    assert lower.input_size == lower.output_size == len(corpus(True).vocabulary) == 70
    text = _decode(lower, lower.batch(0, "train", 1, 200).inputs[0])
    assert text == text.lower() and text in corpus(True).text


@pytest.mark.parametrize("name", NAMES)
def test_untrained_lstm_loss_is_finite_and_near_chance(name):
    task = get_task(name)
    hidden, seq_len, size = 16, task.default_seq_len, 8
    b = task.batch(seed=0, split="train", batch_size=size, seq_len=seq_len)
    one = torch.ones(1, 1, dtype=F64)
    params = build_params(CELLS["lstm"], hidden, task.input_size, [0], one, one, F64,
                          torch.device("cpu"))
    readout = init_readout(task.readout, task.output_size, hidden, [0], F64,
                           torch.device("cpu"))
    x0 = torch.zeros(1, 1, size, 2 * hidden, dtype=F64)  # LSTM state (h, c)
    pred = outputs(CELLS["lstm"], params, readout, b.inputs[None], x0, hidden)
    assert pred.shape == (1, 1, size, seq_len, task.output_size)
    targets = b.targets if task.loss_kind == "cross_entropy" else b.targets[None, None]
    loss, accuracy = task_loss(task.loss_kind, pred, targets, b.mask)
    assert loss.shape == (1, 1) and torch.isfinite(loss).all()
    if task.loss_kind == "cross_entropy":
        # Readout weights N(0, 1/H) on |h| < 1 give logits of std < 1: close to uniform.
        # Measured (seed 0, B = 8): temporal_order 1.383 (log 4 = 1.386), copy_memory 2.200
        # (log 9 = 2.197), char_lm 4.572 (log 96 = 4.564); the bound is 10 % of log(O).
        assert abs(loss.item() - math.log(task.output_size)) < 0.1 * math.log(task.output_size)
        assert 0 <= accuracy.item() <= 1
    else:
        # The target (a sum of two U[0, 1)) is about 1 and the untrained output about 0;
        # measured 1.552 (seed 0, B = 8).
        assert 0.1 < loss.item() < 5


@pytest.mark.parametrize(("name", "params", "match"), [
    ("temporal_order", {"t1_lo": -1}, "t1_lo=-1"),
    ("temporal_order", {"t1_lo": 19, "t1_hi": 19}, "t1_lo < t1_hi, got t1_lo=19, t1_hi=19"),
    ("temporal_order", {"t1_hi": 45}, "t1_hi <= t2_lo, got t1_hi=45, t2_lo=39"),
    ("temporal_order", {"t2_hi": 2.5}, "t2_hi=2.5"),
    ("copy_memory", {"n_symbols": 1}, "n_symbols=1"),
    ("copy_memory", {"length": 0}, "length=0"),
    ("adding", {"seq_len": 10}, r"unknown task_params \['seq_len'\]"),
    ("char_lm", {"lowercase": "yes"}, "lowercase='yes'"),
])
def test_bad_params_are_rejected(name, params, match):
    with pytest.raises(SweeperInputError, match=match):
        get_task(name, params)


@pytest.mark.parametrize(("name", "params", "short", "match"), [
    ("temporal_order", {}, 48, r"seq_len >= t2_hi \(49\), got seq_len=48"),
    ("copy_memory", {"length": 5}, 10, r"seq_len >= 2 \* length \+ 1 \(11\), got seq_len=10"),
    ("adding", {}, 1, "seq_len >= 2.*got seq_len=1"),
    ("char_lm", {}, 0, "got seq_len=0"),
    ("char_lm", {}, 10**6, "got seq_len=1000000"),
])
def test_too_short_seq_len_is_rejected(name, params, short, match):
    task = get_task(name, params)
    task.check_seq_len(short + 1 if short < 10**6 else 100)  # the next length up is fine
    with pytest.raises(SweeperInputError, match=match):
        task.check_seq_len(short)
    with pytest.raises(SweeperInputError, match=match):
        task.batch(0, "train", 2, short)


def test_unknown_split_is_rejected():
    with pytest.raises(SweeperInputError, match="split='test'"):
        get_task("adding").batch(0, "test", 2, 10)


SUPERVISED = [name for name in task_names() if name != "noise"]


@pytest.mark.parametrize("name", SUPERVISED)
def test_every_supervised_task_gives_a_finite_loss_through_the_objective(name):
    # The path measure(metrics=["landscape" / "training"]) takes: build_objective on a fresh
    # seeded network at the default scale; finite losses for every point, deterministic.
    from sweeper import CELLS
    from sweeper.measure import build_params
    from sweeper.model import init_readout
    from sweeper.objective import build_objective

    task = get_task(name)
    cell, hidden = ("lstm", 2) if name == "chaotic_lstm" else ("gru", 8)
    seq_len = min(task.default_seq_len, 60)
    if name == "copy_memory":
        seq_len = task.default_seq_len
    rs = torch.tensor([[0.5, 1.0]], dtype=torch.float64)
    params = build_params(CELLS[cell], hidden, task.input_size, [0], rs, torch.ones_like(rs),
                          torch.float64, torch.device("cpu"), anchor=task.anchor(cell, hidden))
    readout = init_readout(task.readout, task.output_size, hidden, [0], torch.float64,
                           torch.device("cpu"))
    objective, theta = build_objective(CELLS[cell], task, params, readout, hidden, seq_len,
                                       batch_size=4)
    again, _ = build_objective(CELLS[cell], task, params, readout, hidden, seq_len,
                               batch_size=4)
    loss = objective(theta)
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    torch.testing.assert_close(loss, again(theta), rtol=0, atol=0)


def test_adding_loss_of_a_zero_readout_is_the_mean_squared_target():
    # The target y = v1 + v2 with v1, v2 ~ U[0, 1) independent: E[y^2] = 2 (1/12) + 1^2 = 7/6,
    # Var[y^2] = E[y^4] - (7/6)^2 = 31/15 - 49/36. A zero readout answers 0, so its MSE is
    # exactly the batch mean of y^2 (to rounding, 1e-12), and over B = 20000 sequences that
    # mean lies within 0.025 of 7/6 (about 4 standard errors of 0.0059).
    from sweeper.model import Readout

    task, hidden, size, seq_len = get_task("adding"), 4, 20000, 20
    b = task.batch(seed=0, split="train", batch_size=size, seq_len=seq_len)
    one = torch.ones(1, 1, dtype=F64)
    params = build_params(CELLS["lstm"], hidden, task.input_size, [0], one, one, F64,
                          torch.device("cpu"))
    zero = Readout(torch.zeros(1, 1, hidden, dtype=F64), torch.zeros(1, 1, dtype=F64), 1)
    x0 = torch.zeros(1, 1, size, 2 * hidden, dtype=F64)
    pred = outputs(CELLS["lstm"], params, zero, b.inputs[None], x0, hidden)
    loss, _ = task_loss(task.loss_kind, pred, b.targets[None, None], b.mask)
    target = b.targets[:, -1, 0]
    assert loss.item() == pytest.approx((target**2).mean().item(), rel=1e-12)
    assert abs(loss.item() - 7 / 6) < 0.025
