"""Process-wide run-time settings of the inference libraries: CPU threads and OpenCV's log level.

Set once, before models are built (:func:`limit_threads` in worker processes, where several processes on few
cores would otherwise each spin as many threads as there are cores).
"""

from __future__ import annotations

#: Threads each model may use (0 = the library default). Worker processes set 1: with several
#: processes on few cores, multi-threaded inference mostly spins and waits.
CPU_THREADS = 0


def cpu_threads() -> int:
    """The thread limit models built now should use (0: the library's default)."""
    return CPU_THREADS


def limit_threads(threads: int, *, opencv: bool = False) -> None:
    """Use at most ``threads`` CPU threads in models loaded from now on (call before create_detector).

    ``opencv``: OpenCV's own thread pool too (its DNN runs CenterFace, YuNet and SFace). A server that runs
    one model call per core in parallel wants 1 everywhere; benchmarks of one call at a time leave it alone.
    """
    global CPU_THREADS
    CPU_THREADS = max(0, int(threads))
    if CPU_THREADS:
        import torch

        torch.set_num_threads(CPU_THREADS)
        if opencv:
            import cv2

            cv2.setNumThreads(CPU_THREADS)


def quiet_opencv() -> None:
    """OpenCV 5's new DNN engine warns on every network it builds ("Targets are not supported ..."): only errors."""
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # builds without the logging module
        pass
