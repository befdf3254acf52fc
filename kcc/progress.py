"""Progress displays that suit where the output goes.

On a terminal (or in a notebook) progress is a Keras bar redrawn in place. When stdout is a
pipe or a file, Keras' own bar would still write carriage returns and colour codes (it treats
every POSIX system as interactive), so kcc writes plain lines instead: one every
`PLAIN_INTERVAL` seconds and one at the end, e.g.
`distillation epoch 2/5: 8/8 steps, 41 s, loss -0.312`.

`Progress` is for loops kcc runs itself; `FitProgress` (or `callbacks(...)`) shows `Model.fit`
the same way: pass `verbose=0` to `fit` so that Keras does not draw its bar as well.
"""

import sys
import time

import keras

#: Seconds between two plain progress lines when stdout is not a terminal.
PLAIN_INTERVAL = 30.0


def interactive():
    """Whether stdout is a terminal or a notebook, where a bar can be redrawn in place."""
    return sys.stdout.isatty() or "ipykernel" in sys.modules


class Progress:
    """Counts work done towards `target` and shows it.

    Args:
        target: units of work in total.
        label: what is progressing; starts every plain line.
        unit: name of one unit of work (`"step"`, `"batch"`).
        interval: seconds between plain lines (a terminal bar is redrawn at every update).
    """

    def __init__(self, target, label, unit="step", interval=PLAIN_INTERVAL):
        self.target, self.label, self.unit, self.interval = int(target), label, unit, interval
        self.start = self.last = time.time()
        self.bar = None
        if interactive():
            print(label, flush=True)  # Keras' bar has no label of its own
            # Values are shown as given (Keras would average them over updates otherwise).
            self.bar = keras.utils.Progbar(self.target, unit_name=unit, stateless_metrics=set())

    def update(self, current, values=(), finalize=None):
        """Records that `current` of `target` units are done.

        Args:
            current: units done so far.
            values: `(name, number)` pairs to show beside the count, e.g. the current loss.
            finalize: whether this is the last update (default: `current >= target`); a plain
                display always writes the last one.
        """
        values = [(k, float(v)) for k, v in values]
        finalize = current >= self.target if finalize is None else finalize
        if self.bar is not None:
            self.bar.update(current, values, finalize=finalize)
            return
        now = time.time()
        if not finalize and now - self.last < self.interval:
            return
        self.last = now
        shown = "".join(f", {k} {v:.4g}" for k, v in values)
        done = f"{current}/{self.target} {self.unit}s, {now - self.start:.0f} s"
        print(f"{self.label}: {done}{shown}", flush=True)

    def callback(self, done=0):
        """A `Model.fit` callback that adds the steps `fit` runs to `done` and shows the total.

        With `steps_per_execution=n`, Keras reports (and so this shows) every `n` steps.
        """
        return _Forward(self, done)


class _Forward(keras.callbacks.Callback):
    def __init__(self, progress, done):
        super().__init__()
        self.progress, self.done = progress, done

    def on_train_batch_end(self, batch, logs=None):
        self.progress.update(self.done + batch + 1, _numbers(logs), finalize=False)


class FitProgress(keras.callbacks.Callback):
    """`Progress` for `Model.fit`: one display per epoch, updated as batches finish.

    Args:
        label: what is being trained; plain lines read
            `"<label> epoch 2/5: 8/8 steps, 41 s, loss -0.312"` (no epoch for a single one).
        steps: steps per epoch, when `fit` cannot tell (a generator without a length).
    """

    def __init__(self, label, steps=None):
        super().__init__()
        self.label, self.steps = label, steps
        self.progress = None

    def on_epoch_begin(self, epoch, logs=None):
        epochs = self.params.get("epochs", 1)
        label = self.label if epochs == 1 else f"{self.label} epoch {epoch + 1}/{epochs}"
        self.progress = Progress(self.params.get("steps") or self.steps or 1, label)

    def on_train_batch_end(self, batch, logs=None):
        self.progress.update(batch + 1, _numbers(logs), finalize=False)

    def on_epoch_end(self, epoch, logs=None):
        self.progress.update(self.progress.target, _numbers(logs), finalize=True)


def keras_verbose():
    """`verbose` for a `Model.fit` that draws its own bar: `"auto"` (Keras' bar) on a
    terminal, 2 (one plain line per epoch) otherwise."""
    return "auto" if interactive() else 2


def callbacks(label, steps=None, verbose=True):
    """The callbacks that show a `Model.fit` run (`[]` when not `verbose`); see `FitProgress`."""
    return [FitProgress(label, steps)] if verbose else []


def _numbers(logs):
    """The `(name, float)` pairs of `logs` that are single numbers."""
    numbers = []
    for name, value in (logs or {}).items():
        try:
            numbers.append((name, float(value)))
        except (TypeError, ValueError):
            pass
    return numbers
