"""Where the time of a training iteration goes, in phases that the training step marks as it enters them.

The step calls a timer at each boundary; NoTimer, its default, does nothing. PhaseTimer's marks partition the time
from the start of one iteration to the start of the next, so the phases of an iteration add up to the iteration.
"""

import time
from typing import Any, Optional, Sequence

import torch

RASTERIZER_FORWARD = "rasterizer forward"
RASTERIZER_BACKWARD = "rasterizer backward"
BLUR_MODEL = "blur model"
LOSS = "loss"
OPTIMIZER_STEP = "optimizer step"
DENSIFICATION = "densification bookkeeping"
OTHER = "everything else"
PHASES = (RASTERIZER_FORWARD, RASTERIZER_BACKWARD, BLUR_MODEL, LOSS, OPTIMIZER_STEP, DENSIFICATION, OTHER)


class NoTimer:
    """The marks a training step makes, each doing nothing."""

    def iteration(self, iteration: int) -> None:
        """Iteration starts now, in the phase OTHER."""

    def phase(self, name: str) -> None:
        """The phase that was running ends now and phase name starts."""

    def time_rasterizer_backward(self, outputs: Sequence, then: str) -> None:
        """Mark the backward pass through the renders outputs (RasterOutputs) as RASTERIZER_BACKWARD, and what the
        backward pass does after each of them as phase then."""

    def finish(self) -> None:
        """The last iteration ends now."""


NO_TIMER = NoTimer()


class PhaseTimer(NoTimer):
    """Times the phases of every iteration from first_timed_iteration on (earlier ones warm up).

    On CUDA each mark is an event recorded on the current stream and the events are read only by summary(), so
    timing never waits for the device: a phase is the device time between its marks, which includes the time the
    device waits for the host. On the CPU a mark is a time.perf_counter() reading.
    """

    def __init__(self, device: torch.device | str, first_timed_iteration: int = 1):
        self.cuda = torch.device(device).type == "cuda"
        self.first_timed_iteration = first_timed_iteration
        self.current_iteration: Optional[int] = None
        # (iteration, phase that starts at the mark, mark); the mark of finish() has no iteration and no phase. A
        # mark is a torch.cuda.Event on CUDA, a time.perf_counter() reading otherwise.
        self.marks: list[tuple[Optional[int], Optional[str], Any]] = []

    def _mark(self, iteration: Optional[int], name: Optional[str]) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append((iteration, name, event))
        else:
            self.marks.append((iteration, name, time.perf_counter()))

    def iteration(self, iteration: int) -> None:
        self.current_iteration = iteration
        self._mark(iteration, OTHER)

    def phase(self, name: str) -> None:
        self._mark(self.current_iteration, name)

    def time_rasterizer_backward(self, outputs: Sequence, then: str) -> None:
        # The image's hook runs just before the rasterizer's backward, the hook of the screen-space means (a leaf
        # the rasterizer's backward writes) just after it.
        for output in outputs:
            output.image.register_hook(lambda _grad: self.phase(RASTERIZER_BACKWARD))
            output.means2d.register_hook(lambda _grad: self.phase(then))

    def finish(self) -> None:
        self._mark(None, None)

    def _seconds(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) / 1000.0 if self.cuda else end - start

    def summary(self) -> dict[str, Any]:
        """The timed iterations: their count, total seconds, iterations per second, and the seconds of each phase
        (in PHASES order), which add up to the total. Call after finish()."""
        if self.cuda:
            torch.cuda.synchronize()
        phases = dict.fromkeys(PHASES, 0.0)
        iterations = set()
        for (iteration, name, start), (_, _, end) in zip(self.marks, self.marks[1:]):
            if iteration is not None and name is not None and iteration >= self.first_timed_iteration:
                phases[name] += self._seconds(start, end)
                iterations.add(iteration)
        total = sum(phases.values())
        return {
            "iterations": len(iterations),
            "seconds": total,
            "iterations_per_second": len(iterations) / total if total > 0 else None,
            "phase_seconds": phases,
        }
