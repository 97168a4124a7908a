"""ConsumerConfig: everything one consumer runs with, and the configDict it gives its processor.

:class:`ConsumerConfig` is to :class:`~pvagpu.consumer.Consumer` what
``SimConfig`` is to the simulation server: the command line maps its flags
onto it (one field per pvagpu-consumer flag that concerns one consumer),
and library users write it directly::

    from pvagpu.consumer import Consumer
    from pvagpu.runtime.config import ConsumerConfig

    config = ConsumerConfig("det:image", processor_file="my_proc.py",
                            processor_class="MyProcessor",
                            processor_args={"threshold": 10}, status_channel="_")
    stats = Consumer(config).run()

:meth:`ConsumerConfig.processor_config` builds pvapy's configDict (the
processor's arguments plus the framework's keys) in one place for both.
Channel fields take ``_`` and ``*`` as pvapy's flags do
(:func:`~pvagpu.runtime.naming.channel_name`); the resolved names are
:attr:`input_name`, :attr:`output_name`, :attr:`status_name` and
:attr:`control_name`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from ..errors import ConfigurationError
from .loading import parse_processor_args
from .naming import channel_name, format_id
from .workers.plan import parse_gpu_list

#: pvapy's OperationMode names and numbers (its configDict gives processors
#: the number as inputMode/outputMode); pvagpu runs the modes listed in
#: INPUT_MODES and OUTPUT_MODES (pvagpu.pva.input_record, .ca_input, .remote_output).
OPERATION_MODES = {"pva": 0, "pvas": 1, "rpc": 2, "ca": 3, "ejfat": 4}
INPUT_MODES = ("pva", "pvas", "rpc", "ca")
OUTPUT_MODES = ("pvas", "pva", "rpc")
INPUT_MODE_PVA = OPERATION_MODES["pva"]
OUTPUT_MODE_PVAS = OPERATION_MODES["pvas"]


#: The keys the runtime puts into a processor's configDict (processor_config)
#: or reads from a control-channel configure (receiverQueueSize): not the
#: processor's own arguments.
FRAMEWORK_CONFIG_KEYS = frozenset({
    "processorId", "inputChannel", "inputMode", "inputArgs", "outputChannel", "outputMode",
    "outputArgs", "objectIdField", "skipInitialUpdates", "objectIdOffset",
    "nSequentialUpdates", "fieldRequest", "gpu", "receiverQueueSize"})


@dataclass
class ConsumerConfig:
    """One consumer's settings; the defaults are pvagpu-consumer's."""
    #: input channel (NTNDArray) to monitor (-ic)
    input_channel: str
    #: processorId, and the id in ``_`` / ``*`` channel names (-id)
    consumer_id: int = 1
    #: served channels (-oc, -sc, -cc); None: not served
    output_channel: Optional[str] = None
    status_channel: Optional[str] = None
    control_channel: Optional[str] = None
    #: the processor (-pf, -pc); without a class frames pass through
    processor_file: Optional[str] = None
    processor_class: Optional[str] = None
    #: the processor's arguments (-pa): a dict, or its JSON text
    processor_args: Union[dict, str, None] = field(default_factory=dict)
    #: device for GPU processors (--gpu: auto, none or a number); None: not given
    gpu: Optional[str] = None
    #: worker processes running the processor (--n-workers); None: automatic,
    #: 0: none (see pvagpu.runtime.workers.plan)
    n_workers: Optional[int] = None
    #: GPUs the workers are bound to (--gpus): "0,1" or a list; None: automatic
    gpus: Union[str, list, None] = None
    oid_field: str = "uniqueId"
    #: id step between this consumer's frames (-oo); <= 0: 1 (see distributor_oid_offset)
    oid_offset: int = 0
    skip_initial_updates: int = 1
    #: monitor queue (-sqs); 0: sized from the frame size and a memory budget
    server_queue_size: int = 0
    #: <= 0 (with accumulate_objects <= 1): frames processed on the PVA thread
    receiver_queue_size: int = 0
    accumulate_objects: int = 0
    accumulation_timeout: float = 1.0
    #: metadata channel specs (-mc): a list, or the comma-separated text
    metadata_channels: Union[list, str, None] = None
    #: seconds until the consumer stops; <= 0: until stopped (-rt)
    runtime: float = 0.0
    #: seconds between the statistics given to ``on_stats`` subscribers (-rp); <= 0: at the end only
    report_period: float = 0.0
    #: seconds between status channel publications; <= 0: on reports and get_stats only
    status_period: float = 1.0
    #: seconds that queued frames may take to drain at shutdown
    drain_timeout: float = 5.0
    #: the server-side distributor's options (group, set, trigger, updates; -dg/-ds/-dt/-du)
    distributor: Optional[dict] = None
    distributor_plugin: str = "pydistributor"
    #: format spec of the id in channel names (-ifs)
    id_format_spec: Optional[str] = None
    #: fields to ask the server for (-fr); "": all of them
    field_request: Optional[str] = ""
    #: who may use the control channel (--control-allow): entries WHO@WHERE,
    #: comma-separated or a list (pvagpu.pva.access); None: this account, this host
    control_allow: Union[list, str, None] = None
    #: how frames come in (-im): pva (monitor the input channel), pvas (serve it as a
    #: record that clients put frames into), rpc (serve it as an RPC service),
    #: ca (monitor a Channel Access PV, pvagpu.pva.ca_input)
    input_mode: str = "pva"
    #: how output goes out (-om): pvas (served record), pva (put to a remote record),
    #: rpc (RPC to a remote service)
    output_mode: str = "pvas"
    #: pvapy's -ia/-oa JSON text, given to the processor as inputArgs/outputArgs
    input_args: Optional[str] = None
    output_args: Optional[str] = None

    def __post_init__(self):
        self.consumer_id = int(self.consumer_id)
        self.id_format_spec = self.id_format_spec or None
        self.processor_args = parse_processor_args(self.processor_args)
        self.distributor = dict(self.distributor) if self.distributor else None
        parse_gpu_list(self.gpus)   # ConfigurationError if it is not a device list
        self.input_mode = parse_mode(self.input_mode, "input")
        self.output_mode = parse_mode(self.output_mode, "output")
        format_id(self.consumer_id, self.id_format_spec)  # ConfigurationError if it cannot

    def _name(self, spec: Optional[str], kind: str) -> Optional[str]:
        return channel_name(spec, kind, self.consumer_id, self.id_format_spec)

    @property
    def input_name(self) -> str:
        return self._name(self.input_channel, "input")

    @property
    def output_name(self) -> Optional[str]:
        return self._name(self.output_channel, "output")

    @property
    def status_name(self) -> Optional[str]:
        return self._name(self.status_channel, "status")

    @property
    def control_name(self) -> Optional[str]:
        return self._name(self.control_channel, "control")

    @property
    def object_id_offset(self) -> int:
        """The id step used for missed-frame accounting (>= 1)."""
        return self.oid_offset if self.oid_offset and self.oid_offset > 0 else 1

    @property
    def sequential_updates(self) -> int:
        return sequential_updates(self.distributor)

    @property
    def queued(self) -> bool:
        """Frames go through a queue to a processing thread (-rqs N > 0 or
        -ao N > 1); else they are processed on the PVA thread."""
        return (self.receiver_queue_size or 0) > 0 or (self.accumulate_objects or 0) > 1

    def processor_config(self) -> dict:
        """pvapy's configDict: the processor's arguments with the
        framework's keys added (they win over arguments of the same name)."""
        config = dict(self.processor_args)
        config.update({
            "processorId": self.consumer_id,
            "inputChannel": self.input_name,
            "inputMode": OPERATION_MODES[self.input_mode],
            "inputArgs": self.input_args,
            "outputChannel": self.output_name,
            "outputMode": OPERATION_MODES[self.output_mode],
            "outputArgs": self.output_args,
            "objectIdField": self.oid_field,
            "skipInitialUpdates": self.skip_initial_updates,
            "objectIdOffset": self.object_id_offset,
            "nSequentialUpdates": self.sequential_updates,
            "fieldRequest": self.field_request,
        })
        if self.gpu is not None:
            config["gpu"] = self.gpu
        return config


def parse_mode(mode, kind: str) -> str:
    """An input or output mode (``kind``) as pvapy's OperationMode.fromString
    reads it: a name in any case or its number; the lower-case name.
    Modes pvagpu does not run raise ConfigurationError naming them."""
    text = str(mode).strip().lower()
    names = {str(number): name for name, number in OPERATION_MODES.items()}
    name = names.get(text, text)
    supported = INPUT_MODES if kind == "input" else OUTPUT_MODES
    if name in supported:
        return name
    if name == "ejfat":
        reason = "EJFAT transport (pvapy's E2SAR binding) is not part of pvagpu"
    elif name == "ca":
        reason = "Channel Access is an input mode only (pvapy has no CA output either)"
    else:
        reason = f"unknown {kind} mode"
    raise ConfigurationError(f"{kind} mode {mode!r}: {reason}; pvagpu runs the {kind} modes "
                             f"{', '.join(supported)}")


def distributor_oid_offset(oid_offset: int = 0, *, n_consumers: int = 1,
                           distributor_updates: int | None = None,
                           n_distributor_sets: int = 1) -> int:
    """The id step between two frames meant for one consumer (INTEROP 3.4).

    ``oid_offset`` > 0 is used as given. Else, with the distributor handing
    out ``distributor_updates`` (U) updates per turn, a consumer's turn comes
    back after the other consumers' turns: (n_consumers-1)*U+1 with one
    client set, (n_distributor_sets-1)*U+1 with several sets (one turn per
    set). Without the distributor every frame is this consumer's: 1.

    With U > 1 the id steps by 1 inside a turn and by the offset between
    turns (:func:`sequential_updates` gives U to the missed-frame count)."""
    if oid_offset and oid_offset > 0:
        return int(oid_offset)
    if not distributor_updates or distributor_updates < 1:
        return 1
    turns = n_distributor_sets if n_distributor_sets > 1 else n_consumers
    return (max(1, turns) - 1) * int(distributor_updates) + 1


def sequential_updates(distributor: dict | None) -> int:
    """pvapy's nSequentialUpdates: the distributor's updates per turn (U), else 1."""
    updates = (distributor or {}).get("updates")
    return int(updates) if updates is not None and int(updates) > 1 else 1
