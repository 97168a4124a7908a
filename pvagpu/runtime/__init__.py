"""The parts of the consumer runtime, one concept per module.

:class:`pvagpu.consumer.Consumer` wires them together:

=================  ==========================================================
``config``         :class:`ConsumerConfig`, one consumer's settings, and the
                   processor's configDict built from them
``naming``         consumer ids (-cid) and the channel names made from them
``loading``        the processor class (-pf/-pc), its JSON arguments (-pa)
``delivery``       receiver -> frame runner: inline, queued (-rqs), batched (-ao)
``frames``         the frame runner: runs the processor, counts the outcome
``statistics``     gathers and resets the statistics; the one caller of the
                   processor's getStats/getStatsPvaTypes/resetStats
``housekeeping``   status publication, ``on_stats`` reports, runtime limit,
                   control channel commands
=================  ==========================================================
"""
