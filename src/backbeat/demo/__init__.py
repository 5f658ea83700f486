"""``backbeat demo``: the talk's example end to end, on a laptop, with no servers.

The pieces, each a module a reader can copy from (``docs/tutorial.md`` walks through them):

* ``mainapp.py``: the main app. It links accounts and emits ``account.linked`` through
  ``backbeat.Client``; it imports no job code.
* ``jobs.py``: the jobs app. ``@app.on("account.linked")`` starts a recurring poll per user
  (every 20 s, SLA 30 s, rate-limited per token); the poll reads the fake Twitter API and
  posts to the fake feed engine.
* ``fakeapis.py``: the two upstreams, served on loopback.
* ``figures.py``: what the demo shows, read from the store (and the fake APIs' counters).
* ``view.py``: the live terminal view, the plain progress lines and the summary.
* ``runner.py``: puts it together: store, APIs, ``backbeat run``'s machinery, the clock.

Internal package: its code is an example, not an API.
"""
