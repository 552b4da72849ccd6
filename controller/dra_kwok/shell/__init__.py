"""The I/O shell: kopf handlers, the API writer, metrics and health endpoints.

Data flows one way: watch events update the `World`; dirty nodes are resolved, rendered and
planned by the pure core; the `ApiWriter` carries out the plan.
"""
