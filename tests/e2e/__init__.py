"""End-to-end tests: whole user flows on the local cluster (`make demo`; the controller together with
Karpenter's KWOK provider, which needs `make karpenter` and is marked `slow`)."""
