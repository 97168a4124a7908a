"""Tests of pvagpu.gpu, one module per concept; shared fakes in fakes.py."""
