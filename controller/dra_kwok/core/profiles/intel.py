"""Intel GPUs and Gaudi accelerators as Intel's resource drivers publish them (`gpu.intel.com`,
`gaudi.intel.com`).

Source: https://github.com/intel/intel-resource-drivers-for-kubernetes at commit
1da939faa33a90dd641d0327cdcdcbbfaa1acdb4 (after gpu-v0.11.0 and gaudi-v0.7.2; GPU chart 0.11.1,
Gaudi chart 0.7.3).

GPU (`intel-gpu`):

- pkg/gpu/device/device.go: the driver name `gpu.intel.com` (CDIGPUClass + "." + CDIVendor), the
  device type `gpu`;
- pkg/helpers/device.go DeviceUIDFromPCIinfo: the device name, the PCI address and PCI device id
  with `:` and `.` as `-` (`0000-03-00-0-0x56c0`);
- cmd/kubelet-gpu-plugin/node_state.go GetResources: the attributes `model`, `family`, `driver`
  (the bound kernel driver), `sriov` (bool), `type`, `pciId`, `pciAddress`, `health`, `pciRoot`
  (the bus of the PCIe root), `resource.kubernetes.io/pcieRoot`, `resource.kubernetes.io/pciBusID`
  and the capacities `memory` (`<MiB>Mi`) and `millicores` (1000, i.e. `1k`);
- pkg/gpu/device/models.go: model, family and kernel driver of each PCI device id;
- charts/intel-gpu-resource-driver/templates/device-class.yaml with values.yaml's defaults: the
  DeviceClasses `gpu.intel.com` and `gpu-vfio.intel.com` (`extendedResourceName: intel.com/gpu`
  only when `enableDRAExtendedResources`, off by default);
- memory is read from the hardware (or xpumd); the values are the repository's: 16256 MiB for
  0x56c0 and 49136 MiB for 0x0bda (cmd/kubelet-gpu-plugin/driver_test.go), 24480 MiB for 0xe211
  (doc/gpu/USAGE.md's example ResourceSlice, which also shows `health: Healthy`, `sriov: true` and
  `pcieRoot: pci0000:00`); PCI addresses start at 0000:03:00.0 as cmd/device-faker/main.go's GPU.

Gaudi (`intel-gaudi`):

- pkg/gaudi/device/device.go: the driver name `gaudi.intel.com`, the model of each PCI device id;
- cmd/kubelet-gaudi-plugin/node_state.go GetResources: the attributes `model`,
  `resource.kubernetes.io/pcieRoot`, `serial`, `healthy` (bool) and `pciRoot`, no capacity;
- charts/intel-gaudi-resource-driver/templates/device-class.yaml: the DeviceClass `gaudi.intel.com`;
- doc/gaudi/USAGE.md's example ResourceSlice (0000-a0-00-0-0x1020 under pci0000:01,
  0000-b0-00-0-0x1020 under pci0000:02, `healthy: true`) for the PCI layout: buses 0x10 apart, one
  PCIe root each; serial numbers are
  read through HLML, the values follow cmd/kubelet-gaudi-plugin/healthcare_test.go (`000001`, ...).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from pydantic import Field

from .base import Body, DeviceClassSpec, Parameters, Profile, ProfilePool, boolean, quantity, string

REPO = (
    "intel/intel-resource-drivers-for-kubernetes main@1da939faa33a90dd641d0327cdcdcbbfaa1acdb4 "
    "(gpu-v0.11.0+, gaudi-v0.7.2+)"
)
PCIE_ROOT = "resource.kubernetes.io/pcieRoot"  # deviceattribute.StandardDeviceAttributePCIeRoot
PCI_BUS_ID = "resource.kubernetes.io/pciBusID"  # deviceattribute.StandardDeviceAttributePCIBusID


def device_name(pci_address: str, pci_id: str) -> str:
    """helpers.DeviceUIDFromPCIinfo: 0000:03:00.0 and 0x56c0 -> 0000-03-00-0-0x56c0."""
    return f"{pci_address.replace(':', '-').replace('.', '-')}-{pci_id}"


# --- GPU --------------------------------------------------------------------------------------------
GPU_DRIVER = "gpu.intel.com"
GpuPciId = Literal["0x56c0", "0x0bda", "0xe211"]


class GpuModel(NamedTuple):
    """models.go's entry for a PCI device id, and the memory the repository shows for it."""

    model: str
    family: str
    kernel_driver: str
    memory_mib: int


GPU_MODELS: dict[str, GpuModel] = {
    "0x56c0": GpuModel("Flex 170", "Data Center Flex", "i915", 16256),
    "0x0bda": GpuModel("Max 1100", "Data Center Max", "i915", 49136),
    "0xe211": GpuModel("B60", "Arc Pro B-Series", "xe", 24480),
}
FIRST_GPU_BUS = 0x03  # cmd/device-faker/main.go's GPU at 0000:03:00.0


class IntelGpuParameters(Parameters):
    count: int = Field(default=2, ge=1, le=16, description="GPUs on the node.")
    pci_id: GpuPciId = Field(
        default="0x56c0",
        description="The PCI device id, which sets model, family, kernel driver and memory: "
        "0x56c0 Flex 170 (i915, 16256Mi), 0x0bda Max 1100 (i915, 49136Mi), 0xe211 Arc Pro B60 (xe, 24480Mi).",
    )
    sriov: bool = Field(default=True, description="The `sriov` attribute: the GPU has SR-IOV VFs it can enable.")


def build_gpu(p: IntelGpuParameters) -> ProfilePool:
    m = GPU_MODELS[p.pci_id]
    devices: list[Body] = []
    for i in range(p.count):
        pci = f"0000:{FIRST_GPU_BUS + i:02x}:00.0"
        devices.append(
            {
                "name": device_name(pci, p.pci_id),
                "attributes": {
                    "model": string(m.model),
                    "family": string(m.family),
                    "driver": string(m.kernel_driver),
                    "sriov": boolean(p.sriov),
                    "type": string("gpu"),
                    "pciId": string(p.pci_id),
                    "pciAddress": string(pci),
                    "health": string("Healthy"),
                    "pciRoot": string("00"),
                    PCIE_ROOT: string("pci0000:00"),
                    PCI_BUS_ID: string(pci),
                },
                "capacity": {"memory": quantity(f"{m.memory_mib}Mi"), "millicores": quantity("1k")},
            }
        )
    return ProfilePool(devices=devices)


INTEL_GPU = Profile(
    name="intel-gpu",
    driver=GPU_DRIVER,
    summary="Intel Data Center Flex/Max and Arc Pro GPUs, whole, as Intel's GPU resource driver",
    source=f"{REPO}: pkg/gpu/device/{{device,models}}.go, pkg/helpers/device.go, "
    "cmd/kubelet-gpu-plugin/node_state.go, charts/intel-gpu-resource-driver/templates/device-class.yaml, "
    "doc/gpu/USAGE.md",
    parameters=IntelGpuParameters,
    build=build_gpu,
    device_classes=(
        DeviceClassSpec("gpu.intel.com", 'device.driver == "gpu.intel.com"'),
        DeviceClassSpec("gpu-vfio.intel.com", 'device.driver == "gpu.intel.com"'),
    ),
    example={"count": 4, "pciId": "0x0bda"},
)


# --- Gaudi ------------------------------------------------------------------------------------------
GAUDI_DRIVER = "gaudi.intel.com"
GaudiPciId = Literal["0x1020", "0x1030", "0x1060", "0x1061", "0x1062", "0x1063"]
GAUDI_MODELS = {  # pkg/gaudi/device/device.go ModelNames (Gaudi2 and Gaudi3)
    "0x1020": "Gaudi2",
    "0x1030": "Gaudi3",
    "0x1060": "Gaudi3",
    "0x1061": "Gaudi3",
    "0x1062": "Gaudi3",
    "0x1063": "Gaudi3",
}
# doc/gaudi/USAGE.md's accelerators sit on buses 0x10 apart (0000:a0:00.0, 0000:b0:00.0); here the
# eight of an 8-OAM server start lower so that they all fit: 0000:80:00.0 ... 0000:f0:00.0.
FIRST_GAUDI_BUS = 0x80
GAUDI_BUS_STEP = 0x10


class IntelGaudiParameters(Parameters):
    count: int = Field(default=8, ge=1, le=8, description="Gaudi accelerators on the node (an HLS server has 8 OAMs).")
    pci_id: GaudiPciId = Field(
        default="0x1020", description="The PCI device id, which sets the model: 0x1020 Gaudi2, the others Gaudi3."
    )


def build_gaudi(p: IntelGaudiParameters) -> ProfilePool:
    devices: list[Body] = []
    for i in range(p.count):
        pci = f"0000:{FIRST_GAUDI_BUS + GAUDI_BUS_STEP * i:02x}:00.0"
        root = f"{i + 1:02x}"
        devices.append(
            {
                "name": device_name(pci, p.pci_id),
                "attributes": {
                    "model": string(GAUDI_MODELS[p.pci_id]),
                    PCIE_ROOT: string(f"pci0000:{root}"),
                    "serial": string(f"{i + 1:06d}"),
                    "healthy": boolean(True),
                    "pciRoot": string(root),
                },
            }
        )
    return ProfilePool(devices=devices)


INTEL_GAUDI = Profile(
    name="intel-gaudi",
    driver=GAUDI_DRIVER,
    summary="Intel Gaudi2/Gaudi3 accelerators, as Intel's Gaudi resource driver",
    source=f"{REPO}: pkg/gaudi/device/device.go, cmd/kubelet-gaudi-plugin/node_state.go, "
    "charts/intel-gaudi-resource-driver/templates/device-class.yaml, doc/gaudi/USAGE.md",
    parameters=IntelGaudiParameters,
    build=build_gaudi,
    device_classes=(DeviceClassSpec("gaudi.intel.com", 'device.driver == "gaudi.intel.com"'),),
    example={"count": 4, "pciId": "0x1060"},
)

PROFILES: tuple[Profile, ...] = (INTEL_GPU, INTEL_GAUDI)
