"""The I/O shell: watches, the World that stores what they say, the Reconciler that carries out
the core's decisions through `api.KubeApi`, status and Events, health and metrics endpoints.

Data flows one way: watch events update the `World`; for each dirty node the Reconciler asks the
pure core for a decision (`core.decide.decide`), carries out its writes, and records the results
in the World; the status writer reports recorded decisions. See docs/architecture.md.
"""
