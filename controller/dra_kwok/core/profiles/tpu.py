"""Google Cloud TPU chips as the TPU DRA driver publishes them (`tpu.google.com`).

Source: https://github.com/kubernetes-sigs/dra-driver-google-tpu at commit
f5a9d8c8322ba8061112a7115b8ca2597e2a40f1 (after v0.2.0; chart 0.2.0):

- cmd/tpu-dra-kubeletplugin/manager.go GetDevice: one device per chip with the attributes `index`
  (int), `uuid`, `tpuGen`, `brand` (`Google`), `accelerator`, `chipCount` (int) and, when known,
  `topology`; no capacity; the device name is the chip's device file: `accel<n>` under /dev/accel
  (generations up to v4), the IOMMU group number under /dev/vfio (v5e and later; README.md shows
  `name: "0"` with index 0); the uuid is `tpu-<uuid>`;
- cmd/tpu-dra-kubeletplugin/util.go: the accelerator types AcceleratorGen accepts (the GKE
  `cloud.google.com/gke-tpu-accelerator` values) and the generation each gives, the chip counts
  of a host (1, 2, 4, 8) and singleHostTopology (1x1, 1x2, 2x2, 2x4) when no source gives one;
- cmd/tpu-dra-kubeletplugin/hardware.go: which generations use /dev/accel and which vfio;
- deployments/helm/dra-driver-google-tpu/templates/deviceclass.yaml: the DeviceClass `tpu.google.com`;
- README.md: the example attributes (`tpu-v6e-slice`, `v6e`, chipCount 8, topology 2x4) and the
  claim that selects on `accelerator` with `allocationMode: All`.

The real driver refuses, when preparing, a claim that does not take every chip of the node
(ValidateTpuRequest); the scheduler does not know that rule, so it is not simulated. The real
uuid is seeded from the node name only, so at this commit every chip of a node shows the same
one (README.md's two chips do); here each chip gets its own, `tpu-{deviceUUID}`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from .base import Body, DeviceClassSpec, Parameters, Profile, ProfilePool, integer, string

DRIVER = "tpu.google.com"
SOURCE = (
    "kubernetes-sigs/dra-driver-google-tpu main@f5a9d8c8322ba8061112a7115b8ca2597e2a40f1 (v0.2.0-2): "
    "cmd/tpu-dra-kubeletplugin/{manager,util,hardware}.go, "
    "deployments/helm/dra-driver-google-tpu/templates/deviceclass.yaml, README.md"
)

Accelerator = Literal[
    "tpu-v3-device",
    "tpu-v3-slice",
    "tpu-v4-podslice",
    "tpu-v4-lite-device",
    "tpu-v5-lite-device",
    "tpu-v5-lite-podslice",
    "tpu-v5p-slice",
    "tpu-v6e-slice",
]
# util.go AcceleratorGen, for each accelerator type it accepts.
GENERATIONS: dict[str, str] = {
    "tpu-v3-device": "v3",
    "tpu-v3-slice": "v3",
    "tpu-v4-podslice": "v4",
    "tpu-v4-lite-device": "v4lite",
    "tpu-v5-lite-device": "v5lite",
    "tpu-v5-lite-podslice": "v5litepod",
    "tpu-v5p-slice": "v5p",
    "tpu-v6e-slice": "v6e",
}
ACCEL_GENERATIONS = {"v3", "v4", "v4lite"}  # hardware.go: up to v4 a chip is /dev/accel<n>, later vfio
ChipCount = Literal[1, 2, 4, 8]  # util.go requestedChipCountToChipsPerDimNumaAligned
SINGLE_HOST_TOPOLOGY = {1: "1x1", 2: "1x2", 4: "2x2", 8: "2x4"}  # util.go singleHostTopology
TOPOLOGY = re.compile(r"^[1-9][0-9]*x[1-9][0-9]*(x[1-9][0-9]*)?$")  # util.go getTopologyDims: 2D or 3D


class GoogleTpuParameters(Parameters):
    accelerator: Accelerator = Field(
        default="tpu-v6e-slice", description="The accelerator type (GKE's cloud.google.com/gke-tpu-accelerator)."
    )
    chip_count: ChipCount = Field(default=8, description="TPU chips on the node.")
    topology: str | None = Field(
        default=None,
        description="The slice topology (e.g. 4x4, 2x2x2); by default the single host one of chipCount "
        "(1x1, 1x2, 2x2, 2x4), as the driver assumes when no source gives one.",
    )

    @field_validator("topology")
    @classmethod
    def _topology(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not TOPOLOGY.match(value):
            raise ValueError("must be 2 or 3 dimensions of positive integers joined by x, e.g. 2x4 or 2x2x2")
        chips = 1
        for dim in value.split("x"):
            chips *= int(dim)
        count = info.data.get("chip_count")
        if isinstance(count, int) and chips % count:
            raise ValueError(f"holds {chips} chips, not a whole number of hosts of {count} chips (chipCount)")
        return value


def build(p: GoogleTpuParameters) -> ProfilePool:
    generation = GENERATIONS[p.accelerator]
    topology = p.topology or SINGLE_HOST_TOPOLOGY[p.chip_count]
    devices: list[Body] = []
    for i in range(p.chip_count):
        devices.append(
            {
                "name": f"accel{i}" if generation in ACCEL_GENERATIONS else str(i),
                "attributes": {
                    "index": integer(i),
                    "uuid": string("tpu-{deviceUUID}"),
                    "tpuGen": string(generation),
                    "brand": string("Google"),
                    "accelerator": string(p.accelerator),
                    "chipCount": integer(p.chip_count),
                    "topology": string(topology),
                },
            }
        )
    return ProfilePool(devices=devices)


GOOGLE_TPU = Profile(
    name="google-tpu",
    driver=DRIVER,
    summary="Google Cloud TPU chips (v3 to v6e) of one host, as kubernetes-sigs/dra-driver-google-tpu",
    source=SOURCE,
    parameters=GoogleTpuParameters,
    build=build,
    device_classes=(DeviceClassSpec("tpu.google.com", 'device.driver == "tpu.google.com"'),),
    example={"accelerator": "tpu-v5p-slice", "chipCount": 4, "topology": "2x2x2"},
)

PROFILES: tuple[Profile, ...] = (GOOGLE_TPU,)
