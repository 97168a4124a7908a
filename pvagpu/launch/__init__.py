"""pvagpu-launch's parts: one GPU node's processes, supervised, and their table.

* :mod:`~pvagpu.launch.settings` - :class:`LaunchSettings`, from flags and a TOML file;
* :mod:`~pvagpu.launch.plan` - the children's command lines (sim, mirror, consumers);
* :mod:`~pvagpu.launch.supervisor` - starting, watching and stopping the children;
* :mod:`~pvagpu.launch.status_watch` - the consumers' status channels over PV Access;
* :mod:`~pvagpu.launch.gpus` - visible GPUs, memory and utilisation through NVML;
* :mod:`~pvagpu.launch.table` - the aggregated table as text;
* :mod:`~pvagpu.launch.screen` - the table on the terminal;
* :mod:`~pvagpu.launch.launcher` - the run that ties them together.

The console front-end is ``pvagpu-launch`` (:mod:`pvagpu.cli.launch`).
"""
from .plan import ChildSpec, plan
from .settings import LaunchSettings, read_toml, resolve, resolve_nodes

__all__ = ["ChildSpec", "LaunchSettings", "plan", "read_toml", "resolve", "resolve_nodes"]
