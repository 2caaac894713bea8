"""The protocol's phases run as a whole: every phase in order (`hpsearch protocol`), the test
set once (`hpsearch test`), the LR range test on a study (`hpsearch lr-find`), and the
checks of a request against every phase before any runs.

This layer sits above the runner: it runs studies (runner.py) and reads what they stored
(records.py); the protocol's rules themselves (criteria, selection, chaining) are the pure
functions of `hpsearch.protocol`.
"""
