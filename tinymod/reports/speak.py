"""Long commands speak: what they are doing, and how long is left, as they go.

`ProgressBar` is training's: a live bar on a terminal, plain lines on a pipe, which
`tinymod train` hands to tinymod.training.train.run (anything with start, update and close
will do).

`Voice` prints one line per stage and, inside a stage of counted steps, a line with a time
estimate from the first steps on (then at most one line every `every` seconds), through
`echo` (click.echo flushes, so the lines come through a pipe as they are made).
"""
import sys
import time


class Voice:
    def __init__(self, echo, every=5.0, clock=time.perf_counter):
        self.echo, self.every, self.clock = echo, every, clock
        self.start = clock()
        self.stage_name, self.total, self.done, self.stage_start, self.last = None, 0, 0, 0.0, 0.0

    def stage(self, name, total=None):
        """A new stage; `total` counted steps, if it has them (each one reported by `tick`)."""
        self.stage_name, self.total, self.done = name, total or 0, 0
        self.stage_start = self.last = self.clock()
        self.echo(f"[{self.stage_start - self.start:6.1f} s] {name}" + (f" ({total} steps)" if total else ""))

    def tick(self, *_):
        """One step of the stage done: after the first, and then every `every` seconds, say
        how far it is and about how long is left at the rate so far."""
        self.done += 1
        now = self.clock()
        if self.total and (self.done == 1 or now - self.last >= self.every) and self.done < self.total:
            left = (now - self.stage_start) / self.done * (self.total - self.done)
            self.echo(f"[{now - self.start:6.1f} s] {self.stage_name}: {self.done}/{self.total}, "
                      f"about {left:.0f} s left")
            self.last = now

    def finish(self):
        self.echo(f"[{self.clock() - self.start:6.1f} s] done")


class ProgressBar:
    """A live bar on a terminal; on a pipe or in CI, about twenty plain lines per run."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def start(self, step, total, row):
        self.total, self.every = total, max(1, (total - step) // 20)
        self.last_line = step
        self._show(row, force=True)

    def update(self, step, row):
        if self.tty or step - self.last_line >= self.every or step == self.total:
            self.last_line = step
            self._show(row)

    def _show(self, row, force=False):
        done = row["step"] / self.total
        text = (f"step {row['step']:>{len(str(self.total))}}/{self.total} "
                f"| train loss {row['train_loss']:.3g} acc {100 * row['train_acc']:5.1f}% "
                f"| test loss {row['test_loss']:.3g} acc {100 * row['test_acc']:5.1f}% "
                f"| {row['seconds']:.0f}s")
        if self.tty:
            bar = "#" * int(20 * done) + "-" * (20 - int(20 * done))
            self.stream.write(f"\r[{bar}] {text}\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
