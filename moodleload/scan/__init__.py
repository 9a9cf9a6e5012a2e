"""The range scan: measure every STRIDE-th commit of a range, find the steps, bisect them.

Rooms: ``plan`` (which commits, in which order, pure), ``changepoints`` (steps in a series
of runs, pure), ``runner`` (``examples/scan-range.sh``: the measured runs, the bisects),
``report`` (the range's HTML report).
"""
