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

from .loading import parse_processor_args
from .naming import channel_name, format_id

#: pvapy's OperationMode numbers, given to processors in their configDict.
INPUT_MODE_PVA = 0
OUTPUT_MODE_PVAS = 1


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
    oid_field: str = "uniqueId"
    #: id step between this consumer's frames (-oo); <= 0: 1 (see distributor_oid_offset)
    oid_offset: int = 0
    skip_initial_updates: int = 1
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

    def __post_init__(self):
        self.consumer_id = int(self.consumer_id)
        self.id_format_spec = self.id_format_spec or None
        self.processor_args = parse_processor_args(self.processor_args)
        self.distributor = dict(self.distributor) if self.distributor else None
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
            "inputMode": INPUT_MODE_PVA,
            "inputArgs": None,
            "outputChannel": self.output_name,
            "outputMode": OUTPUT_MODE_PVAS,
            "outputArgs": None,
            "objectIdField": self.oid_field,
            "skipInitialUpdates": self.skip_initial_updates,
            "objectIdOffset": self.object_id_offset,
            "nSequentialUpdates": self.sequential_updates,
            "fieldRequest": self.field_request,
        })
        if self.gpu is not None:
            config["gpu"] = self.gpu
        return config


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
