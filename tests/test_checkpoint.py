"""Trained networks as anchors: torch.nn state_dicts mapped onto the built-in cells, the two
scaling rules, and every checkpoint that does not fit refused with its reason."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from sweeper import measure
from sweeper.checkpoint import from_state_dict, load
from sweeper.errors import SweeperInputError
from sweeper.task import get_task


def _save(tmp_path, obj, name="net.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def _independent_lambda1(cell: torch.nn.LSTMCell, inputs: torch.Tensor, burn_in: int) -> float:
    """lambda_1 of h, c -> LSTMCell(u_t, (h, c)) by a plain float64 loop: the Jacobian of each
    step by autograd, one tangent vector renormalised every step, its log growth averaged
    after ``burn_in`` steps. Starts from h = c = 0 (the exponent forgets the start)."""
    hidden = cell.hidden_size
    state = torch.zeros(2 * hidden, dtype=torch.float64)
    tangent = torch.ones(2 * hidden, dtype=torch.float64) / math.sqrt(2 * hidden)
    total = 0.0

    def step(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        h, c = cell(u[None], (x[None, :hidden], x[None, hidden:]))
        return torch.cat([h[0], c[0]])

    for t, u in enumerate(inputs):
        jacobian = torch.autograd.functional.jacobian(lambda x, u=u: step(x, u), state)
        with torch.no_grad():
            state = step(state, u)
            tangent = jacobian @ tangent
            growth = tangent.norm()
            tangent = tangent / growth
        if t >= burn_in:
            total += math.log(float(growth))
    return total / (len(inputs) - burn_in)


def test_a_trained_lstms_lambda1_matches_a_plain_loop_over_lstmcell(tmp_path):
    """measure(weights=...) at s = 1 against torch.nn.LSTMCell with the same weights and the
    same noise inputs: within 0.01 nats/step (the two start from different states; the
    exponent over 1,900 steps forgets the start)."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(1, 8, batch_first=True).double()
    with torch.no_grad():  # a network with some memory and some chaos: larger recurrent weights
        lstm.weight_hh_l0.mul_(6.0)
    # A short training run, so the weights are a trained network's, not a draw's.
    optimiser = torch.optim.Adam(lstm.parameters(), lr=1e-2)
    u = torch.randn(4, 50, 1, dtype=torch.float64)
    for _ in range(20):
        out, _ = lstm(u)
        loss = ((out[:, 1:, 0] - u[:, :-1, 0]) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    path = _save(tmp_path, {"state_dict": {f"module.rnn.{k}": v for k, v in
                                           lstm.state_dict().items()}})
    seq_len, burn_in = 1900, 100
    frame = measure("lstm", 8, weights={"checkpoint": path}, recurrent_scale=[1.0],
                    seq_len=seq_len, dtype="float64", device="cpu", metrics=["lyapunov"])
    cell = torch.nn.LSTMCell(1, 8).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(lstm, f"{name}_l0"))
    inputs = get_task("noise").inputs(0, 1, burn_in + seq_len)[0]
    truth = _independent_lambda1(cell, inputs, burn_in)
    assert abs(frame["lyapunov_max"].iloc[0] - truth) < 0.01, (frame["lyapunov_max"], truth)


@pytest.mark.parametrize(("module", "cell"), [
    (lambda: torch.nn.RNN(2, 5), "rnn_tanh"), (lambda: torch.nn.RNNCell(2, 5), "rnn_tanh"),
    (lambda: torch.nn.GRU(2, 5, bias=False), "gru"), (lambda: torch.nn.GRUCell(2, 5), "gru"),
    (lambda: torch.nn.LSTM(2, 5), "lstm"), (lambda: torch.nn.LSTMCell(2, 5, bias=False), "lstm"),
])
def test_every_torch_recurrent_module_maps_onto_its_cell(module, cell):
    net = module()
    state = {f"_orig_mod.encoder.{k}": v for k, v in net.state_dict().items()}
    anchor = from_state_dict({"model": state}, cell, 5)
    suffix = "_l0" if not isinstance(net, torch.nn.RNNCellBase) else ""
    assert anchor.hidden_size == 5 and anchor.input_size == 2
    torch.testing.assert_close(anchor.weights["weight_hh"],
                               getattr(net, f"weight_hh{suffix}").double())
    if net.bias:
        torch.testing.assert_close(anchor.weights["bias_ih"],
                                   getattr(net, f"bias_ih{suffix}").double())
    else:
        assert not anchor.weights["bias_ih"].any() and not anchor.weights["bias_hh"].any()


def test_a_checkpoint_gives_the_same_trajectory_as_torch(tmp_path):
    """One step of each mapped cell equals the torch module's step: gate orders and names."""
    from sweeper.cells import CELLS
    from sweeper.measure import build_params

    torch.manual_seed(1)
    for cell_name, net in (("rnn_tanh", torch.nn.RNNCell(3, 4)), ("gru", torch.nn.GRUCell(3, 4)),
                           ("lstm", torch.nn.LSTMCell(3, 4))):
        net = net.double()
        anchor = from_state_dict(net.state_dict(), cell_name, 4)
        cell = CELLS[cell_name]
        ones = torch.ones(1, 1, dtype=torch.float64)
        params = build_params(cell, 4, 3, [0], ones, ones, torch.float64,
                              torch.device("cpu"), anchor=anchor.weights)
        u, h, c = (torch.randn(1, n, dtype=torch.float64) for n in (3, 4, 4))
        drive = (u @ anchor.weights["weight_ih"].T + anchor.weights["bias_ih"])[None, None]
        x = torch.cat([h, c], -1) if cell_name == "lstm" else h
        ours = cell.step(params, x[None, None], drive)[0][0, 0]
        theirs = net(u, (h, c)) if cell_name == "lstm" else net(u, h)
        theirs = torch.cat(theirs, -1) if cell_name == "lstm" else theirs
        torch.testing.assert_close(ours, theirs.detach())


def test_scale_all_is_theta_of_s_equal_s_theta_star(tmp_path):
    """scale: all at s = 2 measures exactly what scale: recurrent measures at s = 1 on a
    checkpoint whose every weight and bias was doubled."""
    torch.manual_seed(2)
    net = torch.nn.RNN(1, 6).double()
    with torch.no_grad():
        net.bias_hh_l0.normal_()
    doubled = {k: 2 * v for k, v in net.state_dict().items()}
    kwargs = dict(seq_len=200, dtype="float64", device="cpu", metrics=["lipschitz", "lyapunov"])
    scaled = measure("rnn_tanh", 6, recurrent_scale=[2.0], **kwargs,
                     weights={"checkpoint": _save(tmp_path, net.state_dict()), "scale": "all"})
    direct = measure("rnn_tanh", 6, recurrent_scale=[1.0], **kwargs,
                     weights={"checkpoint": _save(tmp_path, doubled, "doubled.pt")})
    for column in ("lyapunov_max", "lipschitz_bound", "lipschitz_local_max"):
        np.testing.assert_allclose(scaled[column], direct[column], rtol=1e-12, err_msg=column)
    recurrent = measure("rnn_tanh", 6, recurrent_scale=[2.0], **kwargs,
                        weights={"checkpoint": _save(tmp_path, net.state_dict(), "r.pt")})
    assert recurrent["lyapunov_max"].iloc[0] != scaled["lyapunov_max"].iloc[0]


class Payload:
    """A foreign object: unpickling it would run code of the saver's choosing."""

    def __reduce__(self):
        return (print, ("unpickled!",))


@pytest.mark.parametrize(("make", "cell", "match"), [
    (lambda: torch.nn.LSTM(1, 4, num_layers=2).state_dict(), "lstm", "layer 1"),
    (lambda: torch.nn.GRU(1, 4, bidirectional=True).state_dict(), "gru", "bidirectional"),
    (lambda: torch.nn.LSTM(1, 4, proj_size=2).state_dict(), "lstm", "projection"),
    (lambda: torch.nn.LSTM(1, 4).state_dict(), "gru", r"weight_hh is 16 x 4 \(the rows of "
                                                      r"'lstm'\); cell 'gru' needs 12 x 4"),
    (lambda: torch.nn.RNN(1, 5).state_dict(), "rnn_tanh", "hidden size 5 .* hidden_size=4"),
    (lambda: {"a": torch.nn.RNN(1, 4).state_dict(), "b": 1}, "rnn_tanh", "no recurrent"),
    (lambda: {**{f"x.{k}": v for k, v in torch.nn.RNN(1, 4).state_dict().items()},
              **{f"y.{k}": v for k, v in torch.nn.RNN(1, 4).state_dict().items()}},
     "rnn_tanh", r"several recurrent modules \(\['x', 'y'\]\)"),
    (lambda: [1, 2], "rnn_tanh", "holds a list, not a state_dict"),
    (lambda: torch.nn.RNN(1, 4).state_dict(), "orthogonal", "maps onto cells"),
])
def test_a_checkpoint_that_does_not_fit_is_refused_with_its_reason(tmp_path, make, cell, match):
    path = _save(tmp_path, make())
    with pytest.raises(SweeperInputError, match=match):
        load({"checkpoint": path}, cell, 4)


def test_a_foreign_pickle_is_refused_without_being_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"weight_hh": Payload()}, handle)
    torch_path = _save(tmp_path, {"weight_hh_l0": Payload()}, "evil2.pt")
    for bad in (str(path), torch_path):
        with pytest.raises(SweeperInputError, match=r"holds more than tensors|not a readable"):
            load({"checkpoint": bad}, "rnn_tanh", 4)
    assert "unpickled!" not in capsys.readouterr().out


@pytest.mark.parametrize(("spec", "match"), [
    ({"checkpoint": "missing.pt"}, "is not a file"),
    ({"checkpoint": "x.pt", "scale": "input"}, r"weights.scale='input' is not allowed; use "
                                               r"one of \['recurrent', 'all'\]"),
    ({"path": "x.pt"}, r"unknown keys \['path'\]"),
    ("x.pt", "weights must be a mapping"),
])
def test_a_bad_weights_mapping_names_the_bad_value(spec, match):
    with pytest.raises(SweeperInputError, match=match):
        measure("rnn_tanh", 4, weights=spec, seq_len=10)


def test_the_input_size_must_match_the_task(tmp_path):
    path = _save(tmp_path, torch.nn.RNN(3, 4).state_dict())
    with pytest.raises(SweeperInputError, match=r"takes 3 inputs .* task 'noise' gives 1"):
        measure("rnn_tanh", 4, weights={"checkpoint": path}, seq_len=10)


def _space(path, **extra):
    from sweeper.space import validate_space

    raw = {"name": "ck", "task": "noise", "cell": "rnn_tanh", "hidden_size": 4, "seq_len": 20,
           "axes": {"recurrent_scale": [0.5, 1.5]}, "metrics": ["lyapunov"],
           "weights": {"checkpoint": str(path), **extra}}
    return validate_space(raw)


def test_the_checkpoints_content_not_its_path_identifies_the_trials(tmp_path):
    import shutil

    torch.manual_seed(3)
    first = _space(_save(tmp_path, torch.nn.RNN(1, 4).state_dict(), "a.pt"))
    (tmp_path / "elsewhere").mkdir()
    moved = _space(shutil.copy(tmp_path / "a.pt", tmp_path / "elsewhere" / "b.pt"))
    other = _space(_save(tmp_path, torch.nn.RNN(1, 4).state_dict(), "c.pt"))
    ids = [[t.trial_id for t in s.trials()] for s in (first, moved, other)]
    assert ids[0] == ids[1] != ids[2]
    all_scaled = _space(tmp_path / "a.pt", scale="all")
    assert [t.trial_id for t in all_scaled.trials()] != ids[0]
    assert first.weights["sha256"] == first.trials()[0].config["weights"]["sha256"]
    assert "checkpoint" not in first.trials()[0].config["weights"]


def test_a_record_keeps_the_checkpoint_and_a_changed_file_is_refused(tmp_path):
    from sweeper.space import from_record
    from sweeper.sweep import trial_frame

    path = _save(tmp_path, torch.nn.RNN(1, 4).state_dict())
    space = _space(path)
    assert space.raw["weights"]["checkpoint"] == str(tmp_path / "net.pt")
    again = from_record(space.raw)  # reads nothing: the recorded mapping is trusted
    assert again.weights == space.weights
    assert [t.trial_id for t in again.trials()] == [t.trial_id for t in space.trials()]
    frame = trial_frame(space, space.trials()[0], device="cpu")
    assert list(frame["status"]) == ["ok", "ok"]
    torch.save(torch.nn.RNN(1, 4).state_dict(), path)  # retrained in place
    with pytest.raises(SweeperInputError, match="has changed since the sweep recorded it"):
        trial_frame(space, space.trials()[0], device="cpu")


def test_a_search_space_checks_its_checkpoint_against_cell_size_and_task(tmp_path):
    from sweeper.space import validate_space

    path = _save(tmp_path, torch.nn.RNN(2, 4).state_dict())
    raw = {"name": "ck", "task": "noise", "cell": "rnn_tanh", "seq_len": 20,
           "axes": {"recurrent_scale": [1.0], "hidden_size": [4, 8]},
           "weights": {"checkpoint": path}}
    with pytest.raises(SweeperInputError) as caught:
        validate_space(raw)
    assert "hidden_size" in str(caught.value) and "4 alone (the checkpoint's hidden size)" \
        in str(caught.value)
    assert "takes 2 inputs (weight_ih), but task 'noise' gives 1" in str(caught.value)
    with pytest.raises(SweeperInputError, match=r"weights: .*cell 'gru' needs 12 x 4"):
        validate_space({**raw, "cell": "gru", "axes": {"recurrent_scale": [1.0]},
                        "hidden_size": 4})


def test_sweeper_validate_refuses_a_foreign_pickle_with_exit_2(tmp_path):
    import subprocess
    import sys

    evil = _save(tmp_path, {"weight_hh_l0": Payload()}, "evil.pt")
    space = tmp_path / "space.yaml"
    space.write_text(f"name: ck\ncell: rnn_tanh\nhidden_size: 4\nseq_len: 20\n"
                     f"axes: {{recurrent_scale: [1.0]}}\nweights: {{checkpoint: {evil}}}\n")
    done = subprocess.run([sys.executable, "-m", "sweeper.cli", "validate", str(space)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "holds more than tensors" in done.stderr and "Traceback" not in done.stderr
    assert "unpickled!" not in done.stdout
