"""dra-kwok-driver: publishes DRA ResourceSlices for KWOK nodes from DRANodeOverlays and ConfigMap mappings."""

__version__ = "0.1.0"
