"""NVIDIA GPUs as NVIDIA's DRA driver for GPUs publishes them (`gpu.nvidia.com`).

The driver moved from github.com/NVIDIA/k8s-dra-driver-gpu (newest snapshot 22407113, 2026-05-15,
v0.4.0-rc.1-14) to github.com/kubernetes-sigs/dra-driver-nvidia-gpu; this follows the newer home at
commit 95932046683719c43b6a0dd9613c2e5aad5d6703 (2026-08-07, main after v0.4.1):

- cmd/gpu-kubelet-plugin/types.go: the `type` values `gpu` and `mig`;
- cmd/gpu-kubelet-plugin/deviceinfo.go: a full GPU is `gpu-<minor>` with the attributes `type`,
  `uuid`, `productName`, `brand`, `architecture`, the versions `cudaComputeCapability`,
  `driverVersion`, `cudaDriverVersion` (each through semver.MustParse(...).String()), the
  standard `resource.kubernetes.io/pciBusID` and `resource.kubernetes.io/pcieRoot` (the vendored
  k8s.io/dynamic-resource-allocation/deviceattribute) and `resource.kubernetes.io/numaNode` (an
  int while the driver's gate DRAListTypeAttributes is off, its default); `addressingMode` only
  on coherent-memory systems (none of the products here); its one capacity is `memory` (NVML's
  total, bytes, BinarySI);
- cmd/gpu-kubelet-plugin/nvlib.go: how each value is read (NVML name, brand and architecture as
  go-nvlib spells them, `cudaDriverVersion` as `<major>.<minor>`, the PCI bus ID lower-cased by
  go-nvlib) and, with the DynamicMIG feature gate, `inspectMigProfilesAndPlacements`: one MIG
  device per profile whose compute slices equal its GPU slices and per possible placement, the
  per-GPU maximum of every capacity, and the memory-slice count (the largest placement); on
  Ampere with MIG mode enabled the full GPU is not published (`supportsMIGModeToggle`);
- cmd/gpu-kubelet-plugin/mig.go: a MIG device is `gpu-<minor>-mig-<profile without dots,
  RFC 1123>-<GI profile ID>-<placement start>` with the attributes `type` (`mig`), `parentUUID`,
  `profile` and the parent's others (CommonAttributesMig; no `uuid` of its own before it exists)
  and the capacities `multiprocessors`, `copyEngines`, `decoders`, `encoders`, `jpegEngines`,
  `ofaEngines`, `memory` (CommonCapacitiesMig: MemorySizeMB MiB);
- cmd/gpu-kubelet-plugin/partitions.go: one counter set `gpu-<minor>-counter-set` per GPU whose
  counters are those capacities' maxima under camelToDNSName names (`multiprocessors`,
  `copy-engines`, `decoders`, `encoders`, `jpeg-engines`, `ofa-engines`, `memory`) plus
  `memory-slice-<i>` = 1 for each memory slice; a MIG device consumes its capacities and the
  memory slices of its placement;
- cmd/gpu-kubelet-plugin/driver.go: devices of a GPU sorted by name, GPUs by PCI bus ID;
- vendor/github.com/NVIDIA/go-nvlib/pkg/nvlib/device/mig_profile.go: the profile names
  (`<g>g.<gb>gb[+me]`, getMigMemorySizeGB);
- deployments/helm/dra-driver-nvidia-gpu/templates/deviceclass-{gpu,mig,vfio-gpu}.yaml: the
  DeviceClasses (`gpu.nvidia.com` maps the extended resource `nvidia.com/gpu`);
- tests/bats/test_gpu_dynmig.bats: the attribute lists of a GPU and a MIG device on real hardware.

What the driver reads from hardware is taken from the examples NVIDIA publishes for it:

- the products, driver and CUDA versions, UUID formats, PCI bus IDs, PCIe roots and NUMA nodes of
  the mock NVML the driver's CI runs (hack/ci/mock-nvml/common.sh pins github.com/NVIDIA/
  k8s-test-infra at 1275802ba689f3e40be78d15859123c21d3271c4, pkg/gpu/mocknvml/configs/
  mock-nvml-config-{a100,h100,b200,gb200,l40s,t4}.yaml);
- the A100-40GB MIG table (GPU instance profile sizes, engines, memory and placements) of
  github.com/NVIDIA/go-nvml@2f9e261fe40a7a1c54783d66805e8920564763b4 pkg/nvml/mock/gpus/a100.go,
  whose 1g.5gb is exactly the one on the driver's site/content/docs/reference/
  resourceslice-attributes.md (4864Mi, 14 multiprocessors, 1 copy engine); the GI profile IDs
  (19 1g.5gb, 20 1g.5gb+me, 15 1g.10gb, 14 2g.10gb, 9 3g.20gb, 5 4g.20gb, 0 7g.40gb) are those
  `nvidia-smi mig -lgip` prints on an A100-40GB (outputs of it are quoted in public repositories;
  go-nvml's mock numbers them by NVML constant instead); 19 and 14 also appear in the driver's
  own device names (device_state.go, partitions.go, site/content/docs/guides/
  gpu-health-checking.md).

Not simulated: static MIG (pre-created MIG devices with their own MIG-<uuid>), MIG tables of
other products (not published in a form that matches the hardware), VFIO passthrough devices,
consumable shares, Fabric Manager partition attributes, health taints, the real pool name (the
node's name) and the driver's one slice per GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from .base import Body, DeviceClassSpec, Parameters, Profile, ProfilePool, integer, quantity, string, version

DRIVER = "gpu.nvidia.com"
REPO = "github.com/kubernetes-sigs/dra-driver-nvidia-gpu@95932046683719c43b6a0dd9613c2e5aad5d6703"
MOCK = "github.com/NVIDIA/k8s-test-infra@1275802ba689f3e40be78d15859123c21d3271c4"
GO_NVML = "github.com/NVIDIA/go-nvml@2f9e261fe40a7a1c54783d66805e8920564763b4"
SOURCE_GPU = (
    f"{REPO}: cmd/gpu-kubelet-plugin/{{deviceinfo,nvlib,allocatable,types}}.go, "
    "deployments/helm/dra-driver-nvidia-gpu/templates/deviceclass-{gpu,mig,vfio-gpu}.yaml; "
    f"values read from hardware: the driver CI's mock NVML {MOCK} "
    "pkg/gpu/mocknvml/configs/mock-nvml-config-<product>.yaml"
)
SOURCE_MIG = (
    f"{REPO}: cmd/gpu-kubelet-plugin/{{deviceinfo,mig,partitions,nvlib,driver,types}}.go, "
    "vendor/github.com/NVIDIA/go-nvlib/pkg/nvlib/device/mig_profile.go, "
    "deployments/helm/dra-driver-nvidia-gpu/templates/deviceclass-{gpu,mig,vfio-gpu}.yaml; "
    f"A100-40GB MIG table: {GO_NVML} pkg/nvml/mock/gpus/a100.go; "
    f"other hardware values: {MOCK} pkg/gpu/mocknvml/configs/mock-nvml-config-a100.yaml"
)

GPU_TYPE = "gpu"  # types.go GpuDeviceType
MIG_TYPE = "mig"  # mig.go CommonAttributesMig
PCI_BUS_ID = "resource.kubernetes.io/pciBusID"  # deviceattribute.StandardDeviceAttributePCIBusID
PCIE_ROOT = "resource.kubernetes.io/pcieRoot"  # deviceattribute.StandardDeviceAttributePCIeRoot
NUMA_NODE = "resource.kubernetes.io/numaNode"  # deviceinfo.go standardNumaNodeAttribute

DEVICE_CLASSES = (
    DeviceClassSpec(
        "gpu.nvidia.com",
        "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'gpu'",
        "nvidia.com/gpu",
    ),
    DeviceClassSpec(
        "mig.nvidia.com",
        "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'mig'",
    ),
    DeviceClassSpec(
        "vfio.gpu.nvidia.com",
        "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'vfio'",
    ),
)

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True, slots=True)
class Board:
    """One product as the mock NVML of the driver's CI reports it (mock-nvml-config-<key>.yaml)."""

    product_name: str  # device_defaults.name
    architecture: str  # device_defaults.architecture, as go-nvlib's GetArchitectureAsString spells it
    compute_capability: str  # device_defaults.compute_capability major.minor
    memory_bytes: int  # device_defaults.memory.total_bytes (NVML memory.Total)
    driver_version: str  # system.driver_version
    cuda_version: str  # system.cuda_version
    uuid_prefix: str  # devices[].uuid without its last 4 hex digits (the mock's per-board pattern)
    bus_ids: tuple[str, ...]  # devices[i].pci.bus_id for minor i
    roots: tuple[tuple[str, int, tuple[str, ...]], ...]  # pcie_topology: (root complex, NUMA node, bus IDs)
    brand: str = "Nvidia"  # device_defaults.brand "nvidia": NVML BRAND_NVIDIA, GetBrandAsString "Nvidia"

    def topology(self, bus_id: str) -> tuple[str, int]:
        return next((root, numa) for root, numa, ids in self.roots if bus_id in ids)


_HGX_ROOTS = (
    ("pci0000:00", 0, ("0000:1A:00.0", "0000:1B:00.0", "0000:4A:00.0", "0000:4B:00.0")),
    ("pci0000:80", 1, ("0000:8A:00.0", "0000:8B:00.0", "0000:CA:00.0", "0000:CB:00.0")),
)
_HGX_BUS_IDS = ("0000:1A:00.0", "0000:1B:00.0", "0000:4A:00.0", "0000:4B:00.0") + (
    "0000:8A:00.0",
    "0000:8B:00.0",
    "0000:CA:00.0",
    "0000:CB:00.0",
)

BOARDS: dict[str, Board] = {
    "a100": Board(
        "NVIDIA A100-SXM4-40GB",
        "Ampere",
        "8.0",
        40 * GIB,
        "550.163.01",
        "12.4",
        "12345678-1234-1234-1234-12345678",
        ("0000:07:00.0", "0000:0F:00.0", "0000:47:00.0", "0000:4E:00.0")
        + ("0000:87:00.0", "0000:90:00.0", "0000:B7:00.0", "0000:BD:00.0"),
        (
            ("pci0000:00", 0, ("0000:07:00.0", "0000:0F:00.0", "0000:47:00.0", "0000:4E:00.0")),
            ("pci0000:80", 1, ("0000:87:00.0", "0000:90:00.0", "0000:B7:00.0", "0000:BD:00.0")),
        ),
    ),
    "h100": Board(
        "NVIDIA H100 80GB HBM3",
        "Hopper",
        "9.0",
        80 * GIB,
        "550.163.01",
        "12.4",
        "01000100-0000-0000-0000-00000000",
        _HGX_BUS_IDS,
        _HGX_ROOTS,
    ),
    "b200": Board(
        "NVIDIA B200",
        "Blackwell",
        "10.0",
        192 * GIB,
        "560.35.03",
        "12.6",
        "b2000000-0000-0000-0000-00000000",
        _HGX_BUS_IDS,
        _HGX_ROOTS,
    ),
    "gb200": Board(
        "NVIDIA GB200 NVL",
        "Blackwell",
        "10.0",
        192 * GIB,
        "560.35.03",
        "12.6",
        "b200b200-0000-0000-0000-00000000",
        ("0000:0A:00.0", "0000:0B:00.0", "0000:4A:00.0", "0000:4B:00.0")
        + ("0000:8A:00.0", "0000:8B:00.0", "0000:CA:00.0", "0000:CB:00.0"),
        (
            ("pci0000:00", 0, ("0000:0A:00.0", "0000:0B:00.0")),
            ("pci0000:40", 1, ("0000:4A:00.0", "0000:4B:00.0")),
            ("pci0000:80", 2, ("0000:8A:00.0", "0000:8B:00.0")),
            ("pci0000:c0", 3, ("0000:CA:00.0", "0000:CB:00.0")),
        ),
    ),
    "l40s": Board(
        "NVIDIA L40S",
        "Ada Lovelace",
        "8.9",
        48 * GIB,
        "550.163.01",
        "12.4",
        "14050000-0000-0000-0000-00000000",
        ("0000:17:00.0", "0000:31:00.0", "0000:B1:00.0", "0000:CA:00.0")
        + ("0000:18:00.0", "0000:32:00.0", "0000:B2:00.0", "0000:CB:00.0"),
        (
            ("pci0000:00", 0, ("0000:17:00.0", "0000:18:00.0", "0000:31:00.0", "0000:32:00.0")),
            ("pci0000:80", 1, ("0000:B1:00.0", "0000:B2:00.0", "0000:CA:00.0", "0000:CB:00.0")),
        ),
    ),
    "t4": Board(
        "NVIDIA T4",
        "Turing",
        "7.5",
        16 * GIB,
        "550.163.01",
        "12.4",
        "00000074-0000-0000-0000-00000000",
        ("0000:3B:00.0", "0000:86:00.0", "0000:AF:00.0", "0000:D8:00.0"),
        (("pci0000:00", 0, ("0000:3B:00.0", "0000:86:00.0", "0000:AF:00.0", "0000:D8:00.0")),),
    ),
}
BoardName = Literal["a100", "h100", "b200", "gb200", "l40s", "t4"]


@dataclass(frozen=True, slots=True)
class GpuInstanceProfile:
    """One NVML GPU instance profile (nvmlGpuInstanceProfileInfo_t) and its possible placements."""

    profile_id: int  # GpuInstanceProfileInfo.Id, the ID `nvidia-smi mig -lgip` shows
    slices: int  # GPU (= compute) slices: the `<g>g` of the name
    media_extensions: bool  # GPU_INSTANCE_PROFILE_1_SLICE_REV1: the `+me` suffix
    multiprocessors: int
    copy_engines: int
    decoders: int
    encoders: int
    jpeg_engines: int
    ofa_engines: int
    memory_mib: int  # MemorySizeMB (MiB, mig.go)
    placements: tuple[tuple[int, int], ...]  # (start, size) in memory slices


# go-nvml pkg/nvml/mock/gpus/a100.go a100_40gb_GpuInstanceProfiles and a100_GpuInstancePlacements,
# in NVML's profile order (GPU_INSTANCE_PROFILE_1_SLICE, _2_SLICE, _3_SLICE, _4_SLICE, _7_SLICE,
# _1_SLICE_REV1, _1_SLICE_REV2), with the IDs the hardware reports.
A100_40GB_MIG = (
    GpuInstanceProfile(19, 1, False, 14, 1, 0, 0, 0, 0, 4864, tuple((i, 1) for i in range(7))),
    GpuInstanceProfile(14, 2, False, 28, 2, 1, 0, 0, 0, 9856, ((0, 2), (2, 2), (4, 2))),
    GpuInstanceProfile(9, 3, False, 42, 3, 2, 0, 0, 0, 19968, ((0, 4), (4, 4))),
    GpuInstanceProfile(5, 4, False, 56, 4, 2, 0, 0, 0, 19968, ((0, 4),)),
    GpuInstanceProfile(0, 7, False, 98, 7, 5, 0, 1, 1, 40192, ((0, 8),)),
    GpuInstanceProfile(20, 1, True, 14, 1, 1, 0, 1, 1, 4864, tuple((i, 1) for i in range(7))),
    GpuInstanceProfile(15, 1, False, 14, 1, 1, 0, 0, 0, 9856, ((0, 2), (2, 2), (4, 2), (6, 2))),
)
MIG_TABLES: dict[str, tuple[GpuInstanceProfile, ...]] = {"a100": A100_40GB_MIG}
MigBoardName = Literal["a100"]


def semver(text: str) -> str:
    """What semver.MustParse(text).String() publishes (Masterminds semver v3.5, CoerceNewVersion:
    leading zeros dropped, missing parts 0): "550.163.01" -> "550.163.1", "12.4" -> "12.4.0"."""
    parts = [int(p) for p in text.split(".")]
    return ".".join(str(p) for p in parts + [0] * (3 - len(parts)))


def binary_si(n: int) -> str:
    """resource.NewQuantity(n, BinarySI) as the apiserver prints it: the largest exact suffix."""
    for suffix, unit in (("Ti", 1024**4), ("Gi", GIB), ("Mi", MIB), ("Ki", 1024)):
        if n and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def mig_memory_gb(total_bytes: int, memory_mib: int) -> int:
    """go-nvlib getMigMemorySizeGB: the `<gb>gb` of a profile name (memory in eighths, rounded)."""
    fraction = -(-memory_mib * MIB * 8 // total_bytes) / 8  # math.Ceil(fraction*8)/8
    total_gb = -(-total_bytes // GIB)
    return int(fraction * total_gb + 0.5)


def profile_name(p: GpuInstanceProfile, total_bytes: int) -> str:
    """go-nvlib MigProfileInfo.String() for C == G: `1g.5gb`, `1g.5gb+me`."""
    return f"{p.slices}g.{mig_memory_gb(total_bytes, p.memory_mib)}gb" + ("+me" if p.media_extensions else "")


def rfc1123(name: str) -> str:
    """types.go toRFC1123Compliant."""
    return re.sub(r"[^a-z0-9-.]", "-", name.lower()).strip("-").removesuffix(".")


def mig_device_name(minor: int, profile: str, profile_id: int, start: int) -> str:
    """mig.go MigSpecTuple.ToCanonicalName: `gpu-0-mig-1g5gb-19-0`, `gpu-0-mig-1g5gb-me-20-0`."""
    return f"gpu-{minor}-mig-{rfc1123(profile.replace('.', ''))}-{profile_id}-{start}"


def counter_name(capacity: str) -> str:
    """types.go camelToDNSName: `copyEngines` -> `copy-engines`."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", capacity)
    return rfc1123(re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1-\2", s))


DriverVersion = Annotated[
    str | None,
    Field(
        pattern=r"^[0-9]{1,4}\.[0-9]{1,4}(\.[0-9]{1,4})?$",
        description="NVIDIA driver version as NVML reports it (e.g. 550.163.01); default: the product's",
    ),
]
CudaDriverVersion = Annotated[
    str | None,
    Field(
        pattern=r"^[0-9]{1,3}\.[0-9]{1,3}$",
        description="CUDA driver version <major>.<minor> (e.g. 12.4); default: the product's",
    ),
]


class GpuParameters(Parameters):
    product: BoardName = Field(default="a100", description="the board (names of the driver CI's mock NVML)")
    count: int = Field(default=8, ge=1, le=8, description="GPUs per node (minors 0..count-1)")
    driver_version: DriverVersion = None
    cuda_driver_version: CudaDriverVersion = None

    @field_validator("count")
    @classmethod
    def _fits_the_board(cls, count: int, info: ValidationInfo) -> int:
        product = info.data.get("product")
        most = len(BOARDS[product].bus_ids) if product in BOARDS else count
        if count > most:
            raise ValueError(f"a {product} node has at most {most} GPUs")
        return count


class MigParameters(Parameters):
    product: MigBoardName = Field(default="a100", description="A100-SXM4-40GB, the MIG table that is sourced")
    count: int = Field(default=8, ge=1, le=8, description="GPUs per node, each with MIG mode enabled")
    driver_version: DriverVersion = None
    cuda_driver_version: CudaDriverVersion = None


def _gpu_attributes(board: Board, minor: int, p: GpuParameters | MigParameters) -> Body:
    """deviceinfo.go GpuInfo.Attributes() less `type` and `uuid` (CommonAttributesMig shares them)."""
    bus_id = board.bus_ids[minor]
    root, numa = board.topology(bus_id)
    return {
        "productName": string(board.product_name),
        "brand": string(board.brand),
        "architecture": string(board.architecture),
        "cudaComputeCapability": version(semver(board.compute_capability)),
        "driverVersion": version(semver(p.driver_version or board.driver_version)),
        "cudaDriverVersion": version(semver(p.cuda_driver_version or board.cuda_version)),
        PCI_BUS_ID: string(bus_id.lower()),  # go-nvlib GetPCIBusID lower-cases NVML's bus ID
        PCIE_ROOT: string(root),
        NUMA_NODE: integer(numa),
    }


def build_gpus(p: GpuParameters) -> ProfilePool:
    """Full GPUs (DynamicMIG off, MIG mode disabled): AllocatableDevice.GetDevice for each GPU."""
    board = BOARDS[p.product]
    devices = [
        {
            "name": f"gpu-{minor}",
            "attributes": {
                "type": string(GPU_TYPE),
                "uuid": string("GPU-{deviceUUID}"),  # NVML's GPU-<uuid>, one per node and GPU
                **_gpu_attributes(board, minor, p),
            },
            "capacity": {"memory": quantity(binary_si(board.memory_bytes))},
        }
        for minor in range(p.count)
    ]
    return ProfilePool(devices=devices)


def mig_capacities(gi: GpuInstanceProfile) -> dict[str, int]:
    """mig.go CommonCapacitiesMig, in bytes for memory."""
    return {
        "multiprocessors": gi.multiprocessors,
        "copyEngines": gi.copy_engines,
        "decoders": gi.decoders,
        "encoders": gi.encoders,
        "jpegEngines": gi.jpeg_engines,
        "ofaEngines": gi.ofa_engines,
        "memory": gi.memory_mib * MIB,
    }


def _counters(capacities: dict[str, int], start: int, size: int) -> Body:
    """partitions.go capacitiesToCounters + addCountersForMemSlices."""
    out: Body = {counter_name(k): quantity(binary_si(v)) for k, v in capacities.items()}
    out.update({f"memory-slice-{i}": quantity("1") for i in range(start, start + size)})
    return out


def parent_uuid(minor: int) -> str:
    """The parent GPU's NVML UUID. The GPU itself is not published (Ampere with MIG mode on) and
    {deviceUUID} is each device's own, so it is built from the node's hash and the minor, in the
    GPU-<uuid> format: the same for every MIG device of one GPU, different per node and GPU."""
    return f"GPU-{{nodeHash}}-0000-4000-8000-{minor:012x}"


def build_migs(p: MigParameters) -> ProfilePool:
    """DynamicMIG on an A100 with MIG mode enabled: every MIG profile at every placement, each
    consuming its GPU's counter set (generateSplitResourceSlices / PartGetDevice)."""
    board = BOARDS[p.product]
    table = MIG_TABLES[p.product]
    devices: list[Body] = []
    counter_sets: list[Body] = []
    for minor in range(p.count):
        counter_set = rfc1123(f"gpu-{minor}-counter-set")
        common = {
            "type": string(MIG_TYPE),
            "parentUUID": string(parent_uuid(minor)),
            **_gpu_attributes(board, minor, p),
        }
        maxima: dict[str, int] = {}
        slices = 0
        gpu_devices: list[Body] = []
        for gi in table:
            name = profile_name(gi, board.memory_bytes)
            caps = mig_capacities(gi)
            for k, v in caps.items():
                maxima[k] = max(maxima.get(k, v), v)
            for start, size in gi.placements:
                slices = max(slices, size)
                gpu_devices.append(
                    {
                        "name": mig_device_name(minor, name, gi.profile_id, start),
                        "attributes": {**common, "profile": string(name)},
                        "capacity": {k: quantity(binary_si(v)) for k, v in caps.items()},
                        "consumesCounters": [{"counterSet": counter_set, "counters": _counters(caps, start, size)}],
                    }
                )
        devices += sorted(gpu_devices, key=lambda d: str(d["name"]))
        counter_sets.append({"name": counter_set, "counters": _counters(maxima, 0, slices)})
    return ProfilePool(devices=devices, shared_counters=counter_sets)


NVIDIA_GPU = Profile(
    name="nvidia-gpu",
    driver=DRIVER,
    summary="NVIDIA full GPUs (gpu-<minor>) as NVIDIA's DRA driver publishes them without DynamicMIG",
    source=SOURCE_GPU,
    parameters=GpuParameters,
    build=build_gpus,
    device_classes=DEVICE_CLASSES,
    example={"product": "h100", "count": 4},
)

NVIDIA_MIG = Profile(
    name="nvidia-mig",
    driver=DRIVER,
    summary="NVIDIA A100 MIG devices with per-GPU shared counters, as the DRA driver's DynamicMIG publishes them",
    source=SOURCE_MIG,
    parameters=MigParameters,
    build=build_migs,
    device_classes=DEVICE_CLASSES,
    example={"count": 2, "driverVersion": "580.126.20", "cudaDriverVersion": "13.0"},
)

PROFILES: tuple[Profile, ...] = (NVIDIA_GPU, NVIDIA_MIG)
