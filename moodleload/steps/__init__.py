"""Journey step kinds: each kind one class with its own fields, its parser (from config.json),
its report rows and its runner (the requests it makes).

Rooms: ``base`` (what every kind has: ``StepKind``, the ``Outcome`` of a request, and the
``StepContext`` a step runs in), ``page`` (a page, with its web-service calls), ``submit``
(a form of the page before, submitted), ``call`` (one web-service call), ``logout`` (Moodle's
logout; the next journey logs in again), ``kinds`` (every kind, in the order config.json's
errors name them).  A new kind is one more room and its line in ``kinds``.
"""
