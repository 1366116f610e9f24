"""The loop's behaviours besides the loop itself, one small class each (Lightning's callbacks, without their
weight): progress, metrics, periodic evaluation, snapshots, checkpoints and the wall-time budget.

The Distiller calls every callback's hooks in list order: on_start (before the first outer iteration), on_step_end
(inside an outer iteration's measured time: what it records counts as loop time), stop_after (may end the run),
on_iteration_end (after the iteration's time is booked; `last` says whether the loop ends there) and on_end.
State that a resumed run needs goes into state_dict(), saved in the checkpoint.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from ..synthetic import SyntheticSet


class Loop(Protocol):
    """What the callbacks use of the loop (the Distiller): its settings, data, method, context, run folder and
    stopwatch, and its evaluation, records, log, snapshots and checkpoints."""
    config: Any
    data: Any
    method: Any
    context: Any
    run_dir: Any
    timings: Any

    def evaluate(self, synthetic: "SyntheticSet", repeats: int, epochs: int, test: bool) -> dict[str, Any]: ...
    def record(self, event: dict[str, Any]) -> None: ...
    def log(self, message: str) -> None: ...
    def save_snapshot(self, completed: int, synthetic: "SyntheticSet") -> None: ...
    def save_checkpoint(self, completed: int, synthetic: "SyntheticSet") -> None: ...


class Callback:
    """A behaviour of the loop; every hook does nothing unless overridden."""

    def on_start(self, loop: Loop, start: int, synthetic: "SyntheticSet") -> None:
        """Before outer iteration `start` (0: a new run; else resumed from a checkpoint)."""

    def on_step_end(self, loop: Loop, done: int, synthetic: "SyntheticSet", loss: float,
                    seconds: float) -> None:
        """Outer iteration `done` - 1 has run (its mean loss, in `seconds`); still inside its measured time."""

    def stop_after(self, loop: Loop, done: int, iteration_seconds: float) -> bool:
        """Whether the loop should end after `done` outer iterations."""
        return False

    def on_iteration_end(self, loop: Loop, done: int, synthetic: "SyntheticSet", last: bool) -> None:
        """After `done` outer iterations, with their time booked; `last`: no iteration follows."""

    def on_end(self, loop: Loop, done: int, synthetic: "SyntheticSet") -> None:
        """The loop is over after `done` outer iterations."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict() returned."""


class Progress(Callback):
    """The progress bar over inner steps (the method reports each through its context); --quiet hides it."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar = quiet, None

    def on_start(self, loop, start, synthetic):
        steps = loop.method.steps_per_iteration()
        self.bar = tqdm(total=loop.config.distill.iterations * steps, initial=start * steps, desc="distill",
                        unit="inner", disable=self.quiet, dynamic_ncols=True)
        loop.context.progress = self.bar.update

    def on_step_end(self, loop, done, synthetic, loss, seconds):
        self.bar.set_postfix(outer=done, loss=f"{loss:.4g}")

    def on_end(self, loop, done, synthetic):
        self.bar.close()
        loop.context.progress = lambda steps: None


class Metrics(Callback):
    """One 'iteration' event (mean loss, seconds) per outer iteration in metrics.jsonl."""

    def on_step_end(self, loop, done, synthetic, loss, seconds):
        loop.record({"event": "iteration", "iteration": done, "loss": loss, "seconds": seconds})


class PeriodicEvaluation(Callback):
    """Validation accuracy of the set every distill.eval_every outer iterations, at iteration 0 (so that every curve
    shows what the loop adds to its initial set) and at the last one (so that every curve ends there)."""

    def __init__(self, every: int):
        self.every = every
        self.evaluated_at: int | None = None

    def on_start(self, loop, start, synthetic):
        if self.every and not len(loop.data.val):
            loop.log("no validation split (data.val_size=0): periodic evaluation is off, and the final evaluation "
                     "can only report the test accuracy after the last epoch")
            self.every = 0
        if self.every and start == 0:
            self.evaluate(loop, 0, synthetic)

    def on_step_end(self, loop, done, synthetic, loss, seconds):
        if self.every and done % self.every == 0:
            self.evaluate(loop, done, synthetic)

    def on_iteration_end(self, loop, done, synthetic, last):
        if self.every and last and self.evaluated_at != done:
            self.evaluate(loop, done, synthetic)

    def evaluate(self, loop: Loop, done: int, synthetic: "SyntheticSet") -> None:
        """distill.eval_repeats networks of distill.eval_epochs epochs, recorded as an eval event."""
        cfg = loop.config.distill
        result = loop.evaluate(synthetic, cfg.eval_repeats, cfg.eval_epochs or loop.config.eval.epochs, test=False)
        loop.record({"event": "eval", "iteration": done, "val_mean": result["val_mean"],
                     "val_std": result["val_std"], "repeats": result["repeats"], "epochs": result["epochs"],
                     "protocol": result["protocol"]})
        loop.log(f"iteration {done}: validation accuracy {result['val_mean']:.2f}")
        self.evaluated_at = done


class Snapshots(Callback):
    """The set at iteration 0, every distill.snapshot_every outer iterations and at the last one
    (loop.save_snapshot), for curves evaluated after the run."""

    def __init__(self, every: int):
        self.every = every

    def on_start(self, loop, start, synthetic):
        if self.every and start == 0:
            loop.save_snapshot(0, synthetic)

    def on_iteration_end(self, loop, done, synthetic, last):
        if self.every and (done % self.every == 0 or last):
            loop.save_snapshot(done, synthetic)


class Checkpoints(Callback):
    """The checkpoint a run resumes from, every distill.checkpoint_every outer iterations and at the last one
    (on every rank under torchrun, which gathers it; rank 0 writes it)."""

    def __init__(self, every: int):
        self.every = every

    def on_iteration_end(self, loop, done, synthetic, last):
        if done % self.every == 0 or last:
            loop.save_checkpoint(done, synthetic)


def room_for_another(elapsed: float, last_iteration: float, max_minutes: float | None) -> bool:
    """Whether an outer iteration as long as the last one (seconds) still ends within the wall-time budget
    (None: no budget), so that a run given M minutes finishes within M minutes rather than overshooting by up to
    one outer iteration."""
    return max_minutes is None or elapsed + last_iteration <= 60 * max_minutes


class TimeBudget(Callback):
    """Ends the run at distill.max_minutes of loop wall time: inside an outer iteration when another inner step as
    long as the last would end after it (a method that ends_at_deadline ends its outer iteration there:
    LoopContext.inner_step_done), or between outer iterations when not even one more inner step (for such a
    method) or another outer iteration as long as the last (for the others) would end in time; and records why."""

    def __init__(self, max_minutes: float | None):
        self.max_minutes = max_minutes
        self.why: str | None = None     # set when it stops the run

    def stop_after(self, loop, done, iteration_seconds):
        if loop.context.cut_short:
            self.why = (f"the deadline came in it after {loop.context.inner_steps_this_iteration} inner steps "
                        "(another would have ended after")
            return True
        cut = loop.method.ends_at_deadline
        if room_for_another(loop.timings.elapsed, loop.context.last_step_seconds if cut else iteration_seconds,
                            self.max_minutes):
            return False
        self.why = (f"not even another inner step ({loop.context.last_step_seconds:.1f} s) would end before" if cut
                    else f"another outer iteration ({iteration_seconds / 60:.1f} min) would end after")
        return True

    def on_iteration_end(self, loop, done, synthetic, last):
        if self.why is not None and (done != loop.config.distill.iterations or loop.context.cut_short):
            loop.log(f"stopping after outer iteration {done} ({loop.timings.elapsed / 60:.1f} min): {self.why} "
                     f"distill.max_minutes = {self.max_minutes:g}" + (")" if loop.context.cut_short else ""))
            loop.record({"event": "stopped", "iteration": done, "reason": "max_minutes",
                         "elapsed": loop.timings.elapsed, "cut_short": loop.context.cut_short})
