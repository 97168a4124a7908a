"""Numbers that print with their units: pvapy's FloatWithUnits and IntWithUnits.

Processors return them from ``getStats()`` (``FloatWithUnits(rate, 'fps')``);
they are a ``float`` and an ``int``, so the status channel, the control
channel's ``get_stats`` and every calculation take them as plain numbers,
while ``str()`` and the screen report show ``12.3456fps``. As in pvapy,
``+`` and ``-`` with the number on the left keep the units.
"""
from __future__ import annotations


class FloatWithUnits(float):
    """A float that prints as ``f'{value:.{precision}f}{units}'`` (``0.0units`` for zero)."""

    DEFAULT_PRECISION = 4

    def __new__(cls, value, units: str = "", precision: int = DEFAULT_PRECISION):
        return super().__new__(cls, value)

    def __init__(self, value, units: str = "", precision: int = DEFAULT_PRECISION):
        self.units = units
        self.precision = precision

    def __repr__(self) -> str:
        if self == 0:
            return f"0.0{self.units}"
        return f"{float(self):.{self.precision}f}{self.units}"

    __str__ = __repr__

    def __add__(self, other):
        return FloatWithUnits(float(self) + float(other), self.units, self.precision)

    def __sub__(self, other):
        return FloatWithUnits(float(self) - float(other), self.units, self.precision)

    def __reduce__(self):
        return (type(self), (float(self), self.units, self.precision))


class IntWithUnits(int):
    """An int that prints as ``f'{value}{units}'``."""

    def __new__(cls, value, units: str = ""):
        return super().__new__(cls, value)

    def __init__(self, value, units: str = ""):
        self.units = units

    def __repr__(self) -> str:
        return f"{int(self)}{self.units}"

    __str__ = __repr__

    def __add__(self, other):
        return IntWithUnits(int(self) + int(other), self.units)

    def __sub__(self, other):
        return IntWithUnits(int(self) - int(other), self.units)

    def __reduce__(self):
        return (type(self), (int(self), self.units))
