"""Train a small torch.nn.LSTM on the built-in adding task and save its state_dict: the
trained network that search_spaces/trained_lstm.yaml sweeps around (theta(s) = s * theta*).

    python examples/train_lstm.py [--out examples/lstm_adding.pt] [--steps 300]

Under a minute on two CPU cores (mean squared error from 0.17 to about 0.002). The task's batches come from rnn-sweeper itself
(``get_task("adding").batch``), so the network is trained on exactly what the sweep drives it
with; any torch.nn.RNN (tanh), GRU or LSTM state_dict works the same way.
"""

from __future__ import annotations

import argparse
import time

import torch

from sweeper.task import get_task

HIDDEN, SEQ_LEN, BATCH = 16, 20, 64


class Model(torch.nn.Module):
    """An LSTM and a linear read-out of its last hidden state."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(2, HIDDEN, batch_first=True)
        self.readout = torch.nn.Linear(HIDDEN, 1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(inputs)
        return self.readout(states[:, -1])[:, 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/lstm_adding.pt")
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    torch.manual_seed(0)
    task, model = get_task("adding"), Model().double()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    start = time.perf_counter()
    for step in range(args.steps):
        batch = task.batch(step, "train", BATCH, SEQ_LEN)
        target = batch.targets[:, -1, 0]
        loss = torch.nn.functional.mse_loss(model(batch.inputs), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step}: mse {loss.item():.4f} (predicting the mean: 0.167)")
    # The whole model's state_dict: the loader finds the one recurrent module ("lstm.") and
    # ignores the read-out.
    torch.save(model.state_dict(), args.out)
    print(f"saved {args.out} after {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
