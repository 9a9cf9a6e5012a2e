"""The bisect step: one step of ``git bisect run`` (``python -m moodleload.bisect``, or
``examples/bisect-step.sh``, its thin wrapper), the baseline it judges against, one prepared
run for the range scan, the culprit's confirmation against its parent, and the snapshot put
back.

Rooms: ``settings`` (the step's settings, read once from the environment and checked before
anything runs), ``prepare`` (the site brought to the checked-out commit: the snapshot
restored by its database family, the commit's own upgrade and purge scripts in whichever
layout it has), ``step`` (the modes, the runs pooled until the answer is decided, and their
exit statuses), ``__main__`` (``python -m moodleload.bisect``).
"""
