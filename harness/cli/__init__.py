"""The ``harness`` command line: ``main`` (entry point, parser assembly, dispatch, one-line errors) and
one module per command group, each registering its sub-parser and handler: ``listing`` (list), ``run``,
``leaderboard`` (leaderboard, visualize), ``data``, ``evaluate`` (eval), ``deploy`` (predict, export);
``common`` holds what several groups share."""
