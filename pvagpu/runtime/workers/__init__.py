"""Worker processes inside one consumer (``--n-workers``, ``--gpus``).

=============  ==============================================================
``plan``       how many workers, bound to which GPUs (:func:`plan_workers`)
``pool``       :class:`WorkerPool`: dispatch (least-loaded first), commands
               to every worker, statistics; stands in for the processor
``handle``     one worker seen from the receiving process: its process,
               queues, results, death and restart
``child``      the consumer's processor inside a worker process
``batch``      -ao N: a worker's frames in batches (full, timed out, flushed)
``metadata``   -mc: each worker subscribes; their statistics, totalled
``stats``      per-worker statistics keys and types, the total userStats
=============  ==============================================================
"""
from .plan import WorkerPlan, parse_gpu_list, plan_workers
from .pool import WorkerPool
from .stats import WORKER_STATS_TYPES, section_name

__all__ = ["WorkerPlan", "WorkerPool", "WORKER_STATS_TYPES", "parse_gpu_list", "plan_workers",
           "section_name"]
