"""Processor loading: the class named by -pf/-pc, its JSON arguments, the instance.

A processor class comes from a Python file (``--processor-file`` with a
class name) or from an importable module (``module:Class`` or
``module.Class``); its arguments are a JSON object, never evaluated as
Python. Every failure is a :class:`~pvagpu.errors.ConfigurationError`
that says what is wrong.

Class paths as pvapy's documentation writes them
(``pvapy.hpc.userDataProcessor.UserDataProcessor``,
``pvapy.hpc.adOutputFileProcessor.AdOutputFileProcessor``, the encryptors
...) name pvagpu's class of that name in :mod:`pvagpu.hpc`, always, even
where pvapy is installed (its classes need pvapy's PvObjects and fail on
every p4p frame); a warning at start says so. Only the ``-pc`` spelling is
resolved: a processor file imports ``pvagpu.hpc`` itself.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import sys
from pathlib import Path

from ..errors import ConfigurationError

log = logging.getLogger(__name__)

#: the package whose class paths name pvagpu.hpc's classes
PVAPY_HPC = "pvapy.hpc."
#: pvapy classes whose pvagpu counterpart has another name or configuration
PVAPY_OTHER_NAMES = {
    "Hdf5AdImageWriter": "pvagpu.hpc.Hdf5OutputProcessor (its configuration keys differ: "
                         "see its docstring)",
}
_announced = set()


def resolve_pvapy_class_path(processor_class: str) -> str:
    """``pvagpu.hpc:Class`` for a pvapy.hpc class path such as
    ``pvapy.hpc.adImageProcessor.AdImageProcessor`` (or ``...:AdImageProcessor``);
    other class paths unchanged. A pvapy class that pvagpu lacks is a
    :class:`ConfigurationError` naming pvagpu's classes."""
    if not processor_class.startswith(PVAPY_HPC):
        return processor_class
    sep = ":" if ":" in processor_class else "."
    class_name = processor_class.rpartition(sep)[2]
    from .. import hpc
    if class_name not in hpc.__all__:
        other = PVAPY_OTHER_NAMES.get(class_name)
        raise ConfigurationError(
            f"processor class {processor_class!r} is pvapy's; pvagpu has "
            + (f"it as {other}" if other else
               f"no class {class_name!r}; its pvapy.hpc classes: {', '.join(hpc.__all__)}"))
    resolved = f"pvagpu.hpc:{class_name}"
    if processor_class not in _announced:
        _announced.add(processor_class)
        log.warning("processor class %s is pvapy's class path: loading pvagpu's %s instead "
                    "(pvapy's classes need pvapy objects; pvagpu's have the same API)",
                    processor_class, resolved)
    return resolved


def load_processor_class(processor_file: str | None = None, processor_class: str | None = None):
    """The processor class named by ``--processor-file`` / ``--processor-class``.

    ``processor_file`` + a class name loads the class from that Python file;
    without a file, ``processor_class`` is ``package.module:Class`` or
    ``package.module.Class``. Neither gives None (frames pass through).
    Any failure raises :class:`ConfigurationError` saying what is wrong."""
    if not processor_class:
        if processor_file:
            raise ConfigurationError("--processor-file needs --processor-class to name the class")
        return None
    if processor_file:
        path = Path(processor_file)
        if not path.is_file():
            raise ConfigurationError(f"processor file {str(path)!r} does not exist")
        module_name = f"pvagpu_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ConfigurationError(f"processor file {str(path)!r} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise ConfigurationError(f"cannot load processor file {str(path)!r}: "
                                     f"{type(exc).__name__}: {exc}") from exc
        class_name, where = processor_class, f"processor file {str(path)!r}"
    else:
        processor_class = resolve_pvapy_class_path(processor_class)
        if ":" in processor_class:
            module_path, _, class_name = processor_class.partition(":")
        else:
            module_path, _, class_name = processor_class.rpartition(".")
        if not module_path or not class_name:
            raise ConfigurationError(
                f"processor class {processor_class!r}: give module:Class or module.Class, "
                f"or a class name with --processor-file")
        try:
            module = importlib.import_module(module_path)
        except Exception as exc:
            raise ConfigurationError(
                f"cannot import module {module_path!r} for processor class "
                f"{processor_class!r}: {type(exc).__name__}: {exc}") from exc
        where = f"module {module_path!r}"
    cls = getattr(module, class_name, None)
    if cls is None or not isinstance(cls, type):
        classes = sorted(n for n, v in vars(module).items()
                         if isinstance(v, type) and not n.startswith("_"))
        raise ConfigurationError(f"{where} has no class {class_name!r}"
                                 + (f"; its classes: {', '.join(classes)}" if classes else ""))
    if not callable(getattr(cls, "process", None)):
        raise ConfigurationError(f"{class_name} in {where} has no process() method")
    return cls


def parse_processor_args(text) -> dict:
    """``--processor-args``: a JSON object (never evaluated as Python)."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        args = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"processor args are not valid JSON ({exc}): {text!r}") from None
    if not isinstance(args, dict):
        raise ConfigurationError(
            f"processor args must be a JSON object, got {type(args).__name__}: {text!r}")
    return args


def make_processor(cls, config: dict):
    """An instance of ``cls`` built with ``config`` (pvapy's configDict)."""
    if cls is None:
        return None
    try:
        return cls(config)
    except Exception as exc:
        raise ConfigurationError(f"processor {cls.__name__}({config!r}) failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
