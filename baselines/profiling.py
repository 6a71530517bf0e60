"""`mosaic train --profile N`: torch.profiler over N optimizer steps, written next to the adapter.

The first two steps are skipped (the first one compiles under --compile and warms the allocator),
the third is the profiler's own warm-up, then N steps are recorded. `profile.txt` holds, per
recorded step: wall seconds, host seconds (time spent inside operators, on every host thread,
waits for the GPU left out), device seconds (time the GPU spent in kernels; CUDA only) and kernel
launches (CUDA runtime and driver
launch calls, CUDA graph replays counted once; on the CPU, operator calls instead, nested ones
included), followed by the operators that took the most self time. When the device time per step
is far below the wall time, the step is bound by the host (launch overhead), not by the GPU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

SKIPPED_STEPS = 2  # compile + allocator warm-up
PROFILE_NAME = "profile.txt"
_LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch",
             "cudaLaunchCooperativeKernel")
_WAITS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize")


def steps_needed(steps: int) -> int:
    """--max-steps a run needs to profile `steps` steps: the skipped ones, the profiler's warm-up, the steps."""
    return SKIPPED_STEPS + 1 + steps


class StepProfiler:
    """A context manager around the training loop; call `step()` after every optimizer step."""

    def __init__(self, steps: int, device_type: str) -> None:
        import torch.profiler as tp

        self.steps, self.cuda = steps, device_type == "cuda"
        activities = [tp.ProfilerActivity.CPU] + ([tp.ProfilerActivity.CUDA] if self.cuda else [])
        self.prof = tp.profile(activities=activities, on_trace_ready=self._ready,
                               schedule=tp.schedule(wait=SKIPPED_STEPS, warmup=1, active=steps, repeat=1))
        self.summary: dict[str, Any] | None = None
        self.table = ""
        self._seen, self._t0, self._walls = 0, 0.0, []

    def __enter__(self) -> StepProfiler:
        self.prof.__enter__()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.prof.__exit__(*exc)

    def step(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        now = time.perf_counter()
        self._seen += 1
        if SKIPPED_STEPS + 1 < self._seen <= SKIPPED_STEPS + 1 + self.steps:
            self._walls.append(now - self._t0)
        self._t0 = now
        self.prof.step()

    def _ready(self, prof: Any) -> None:
        from torch.autograd import DeviceType

        events = prof.key_averages()
        n = max(len(self._walls), 1)
        # host: operator time on every thread, without the step markers (whose self time is everything
        # outside an operator) and the waits for the GPU; device: kernels only (an operator's row also
        # carries its kernels' time, and user annotations span them)
        cpu = sum(e.self_cpu_time_total for e in events if e.device_type == DeviceType.CPU
                  and not e.key.startswith("ProfilerStep") and e.key not in _WAITS) / 1e6
        device = sum(e.self_device_time_total for e in prof.events() if e.device_type == DeviceType.CUDA
                     and not getattr(e, "is_user_annotation", False)) / 1e6 if self.cuda else None
        if self.cuda:
            calls = sum(e.count for e in events if e.key in _LAUNCHES)
        else:
            calls = sum(e.count for e in events if e.key.startswith("aten::"))
        first = SKIPPED_STEPS + 2
        self.summary = {"steps": [first, first + len(self._walls) - 1], "wall_s_per_step": sum(self._walls) / n,
                        "cpu_self_s_per_step": cpu / n,
                        "device_self_s_per_step": None if device is None else device / n,
                        ("kernel_launches_per_step" if self.cuda else "operator_calls_per_step"): calls / n}
        sort = "self_device_time_total" if self.cuda else "self_cpu_time_total"
        self.table = events.table(sort_by=sort, row_limit=25)

    def report(self) -> str:
        """The text of profile.txt (empty when the run ended before the recorded steps)."""
        if self.summary is None:
            return ""
        s = self.summary
        lines = [f"profiled optimizer steps {s['steps'][0]}..{s['steps'][1]} ({'CUDA' if self.cuda else 'CPU'})",
                 f"wall s per step:          {s['wall_s_per_step']:.4f}",
                 f"host operator s per step: {s['cpu_self_s_per_step']:.4f} (all threads, GPU waits left out)"]
        if self.cuda:
            lines += [f"device kernel s per step: {s['device_self_s_per_step']:.4f}",
                      f"kernel launches per step: {s['kernel_launches_per_step']:.0f}"]
        else:
            lines.append(f"operator calls per step: {s['operator_calls_per_step']:.0f} (nested calls included)")
        return "\n".join(lines) + "\n\n" + self.table + "\n"

    def write(self, out: Path) -> Path | None:
        text = self.report()
        if not text:
            return None
        path = Path(out) / PROFILE_NAME
        path.write_text(text)
        return path
