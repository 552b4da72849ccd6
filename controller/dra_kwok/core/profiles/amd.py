"""AMD Instinct GPUs as the AMD GPU DRA driver publishes them (`gpu.amd.com`).

Source: https://github.com/ROCm/k8s-gpu-dra-driver at commit
2622427226d5ac361c3588284f4815e0dae11eaa (chart and app v0.1.0):

- pkg/consts/consts.go: the driver name `gpu.amd.com`;
- cmd/gpu-kubeletplugin/deviceinfo.go: the device name `gpu-<cardIndex>-<renderIndex>`, the
  attributes of a full GPU (`type`, `pciAddr`, `cardIndex`, `renderIndex`, `deviceID`, `family`,
  `productName`, `driverVersion` (a version), `driverSrcVersion`, `partitionProfile`, plus the
  PCIe root attribute `resource.kubernetes.io/pcieRoot` of k8s.io/dynamic-resource-allocation's
  deviceattribute) and of a partition (`type`, `parentPciAddr`, `cardIndex`, `renderIndex`,
  `parentDeviceID`, `family`, `productName`, `driverVersion`, `driverSrcVersion`,
  `partitionProfile`, the parent's PCIe root), and the capacities `memory` (bytes, BinarySI),
  `computeUnits` and `simdUnits`;
- cmd/gpu-kubeletplugin/types.go: the `type` values `amdgpu` and `amdgpu-partition`;
- cmd/gpu-kubeletplugin/discovery.go and pkg/amdgpu/amdgpu.go: a GPU whose compute partition is
  `spx` is published whole, any other mode publishes one device per partition (the PCI device
  itself and its `amdgpu_xcp_*` platform devices) and no whole GPU; `partitionProfile` is
  `<compute>_<memory>` in lower case; `productName` is sysfs `product_name` with spaces turned
  into `_` and parentheses dropped; `deviceID` is the KFD topology `unique_id`;
- helm-charts-k8s/templates/deviceclass.yaml: the DeviceClass `gpu.amd.com`;
- docs/demo.md: the example values read from hardware (MI300X: `AMD_Instinct_MI300X_OAM`, family
  `AI`, driver 6.12.12 / srcversion 7AA72EC2C8F513519BE86FD, 196592Mi, 304 CUs, 1216 SIMDs, PCI
  address 0003:00:02.0 under pcieRoot pci0003:00, device ID 994913940318892495) and the device
  names of one node (gpu-0-128, gpu-40-168, gpu-48-176: render index = 128 + card index, card
  indexes 8 apart per GPU, the gaps holding each GPU's up to 8 partitions).

The driver partitions nothing itself: partitions are set on the host (amd-smi) before it starts,
so they are fixed devices, not counters. A partition's capacities are the GPU's divided by the
number of partitions, as the amdgpu kernel driver's KFD topology reports them per partition
(KFD_XCP_MEMORY_SIZE: the memory partition's size over the partitions sharing it). The modes are
those AMD documents for MI300X (amdsmi_accelerator_partition_profile_t: SPX 1, DPX 2, QPX 4, CPX 8
partitions; NPS4 only with CPX).
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field

from .base import Body, DeviceClassSpec, Parameters, Profile, ProfilePool, integer, quantity, string, version

DRIVER = "gpu.amd.com"
SOURCE = (
    "ROCm/k8s-gpu-dra-driver main@2622427226d5ac361c3588284f4815e0dae11eaa (untagged; chart v0.1.0): "
    "pkg/consts/consts.go, cmd/gpu-kubeletplugin/{deviceinfo,discovery,types}.go, pkg/amdgpu/amdgpu.go, "
    "helm-charts-k8s/templates/deviceclass.yaml, docs/driver-attributes.md, docs/demo.md"
)

FULL_GPU = "amdgpu"  # types.go AmdGpuDeviceType
PARTITION = "amdgpu-partition"  # types.go AmdPartitionDeviceType
PCIE_ROOT = "resource.kubernetes.io/pcieRoot"  # deviceattribute.StandardDeviceAttributePCIeRoot

# Read from the host by the real driver; these are docs/demo.md's MI300X values.
PRODUCT_NAME = "AMD_Instinct_MI300X_OAM"
FAMILY = "AI"
DRIVER_VERSION = "6.12.12"
DRIVER_SRC_VERSION = "7AA72EC2C8F513519BE86FD"
MEMORY_MIB = 196592
COMPUTE_UNITS = 304
SIMD_UNITS = 1216
PCI_DOMAIN_BUS = "0003:00"  # docs/demo.md's pciAddr 0003:00:02.0, pcieRoot pci0003:00
FIRST_RENDER_INDEX = 128  # renderD128
CARDS_PER_GPU = 8  # card indexes reserved per GPU (one per possible partition), as in docs/demo.md
FIRST_PCI_SLOT = 2  # docs/demo.md's first GPU at 0003:00:02.0

PartitionProfile = Literal["spx_nps1", "dpx_nps1", "qpx_nps1", "cpx_nps1", "cpx_nps4"]
PARTITIONS = {"spx": 1, "dpx": 2, "qpx": 4, "cpx": 8}  # MI300X partitions per compute mode


class AmdGpuParameters(Parameters):
    count: int = Field(default=8, ge=1, le=8, description="MI300X GPUs on the node (an 8-GPU OAM platform has 8).")
    partition_profile: PartitionProfile = Field(
        default="spx_nps1",
        description="The compute and memory partition mode set on the host: spx publishes whole GPUs, "
        "dpx/qpx/cpx publish 2/4/8 partitions per GPU and no whole GPU.",
    )


def device_id(gpu: int) -> str:
    """A stand-in for KFD's `unique_id` of GPU `gpu`: a decimal 64-bit number like the real one,
    the same on every node (the real one differs per board); partitions carry their GPU's."""
    return str(int(hashlib.sha256(f"{DRIVER}/gpu/{gpu}".encode()).hexdigest()[:15], 16))


def _common(card: int, profile: str) -> Body:
    return {
        "cardIndex": integer(card),
        "renderIndex": integer(FIRST_RENDER_INDEX + card),
        "family": string(FAMILY),
        "productName": string(PRODUCT_NAME),
        "driverVersion": version(DRIVER_VERSION),
        "driverSrcVersion": string(DRIVER_SRC_VERSION),
        "partitionProfile": string(profile),
        PCIE_ROOT: string(f"pci{PCI_DOMAIN_BUS}"),
    }


def build(p: AmdGpuParameters) -> ProfilePool:
    compute = p.partition_profile.split("_", 1)[0]
    parts = PARTITIONS[compute]
    capacity = {
        "memory": quantity(f"{MEMORY_MIB // parts}Mi"),
        "computeUnits": quantity(str(COMPUTE_UNITS // parts)),
        "simdUnits": quantity(str(SIMD_UNITS // parts)),
    }
    devices: list[Body] = []
    for gpu in range(p.count):
        pci = f"{PCI_DOMAIN_BUS}:{FIRST_PCI_SLOT + gpu:02x}.0"
        for k in range(parts):
            card = gpu * CARDS_PER_GPU + k
            attributes = _common(card, p.partition_profile)
            if parts == 1:
                attributes |= {"type": string(FULL_GPU), "pciAddr": string(pci), "deviceID": string(device_id(gpu))}
            else:
                attributes |= {
                    "type": string(PARTITION),
                    "parentPciAddr": string(pci),
                    "parentDeviceID": string(device_id(gpu)),
                }
            name = f"gpu-{card}-{FIRST_RENDER_INDEX + card}"
            devices.append({"name": name, "attributes": attributes, "capacity": dict(capacity)})
    return ProfilePool(devices=devices)


AMD_GPU = Profile(
    name="amd-gpu",
    driver=DRIVER,
    summary="AMD Instinct MI300X GPUs, whole (SPX) or pre-partitioned (DPX/QPX/CPX), as ROCm's k8s-gpu-dra-driver",
    source=SOURCE,
    parameters=AmdGpuParameters,
    build=build,
    device_classes=(DeviceClassSpec("gpu.amd.com", "device.driver == 'gpu.amd.com'"),),
    example={"count": 2, "partitionProfile": "cpx_nps4"},
)

PROFILES: tuple[Profile, ...] = (AMD_GPU,)
