"""The engine: one masking/evaluation engine (``masking``) that live toggles, Shapley, pruning curves
and pruning itself all go through; pools of workers that run it (``pools``); the on-disk cache of long
computations (``cache``); one image's predicted classes (``predict``); figures of an evaluation (``plots``);
the compute policy: threads, slots and cancellation (``compute``). Stands on ``network`` and ``data``."""
from .compute import BACKGROUND, HEAVY, LIVE, Cancelled, Scheduler, Token, default_threads, scheduler, set_threads
from .masking import Engine
from .masks import (PRECISIONS, BatchResult, EvalResult, Off, check_compatible, check_precision, keep_vector,
                    parse_units)
from .pools import LocalPool, RayPool, WorkerError, engine_pool
from .predict import class_probabilities, predict

__all__ = ["Engine", "EvalResult", "BatchResult", "Off", "PRECISIONS", "check_precision", "check_compatible",
           "keep_vector", "parse_units", "LocalPool", "RayPool", "WorkerError", "engine_pool",
           "class_probabilities", "predict"]
__all__ += ["Cancelled", "Token", "Scheduler", "scheduler", "set_threads", "default_threads", "LIVE", "HEAVY",
            "BACKGROUND"]
