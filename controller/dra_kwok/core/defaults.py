"""The defaults of the controller and the CLI, each defined once: what a KWOK node is, the names
of the ConfigMap and of this installation. Flags (and the chart's DRA_KWOK_* variables) override
each; `shell.settings.Settings` and the CLI's flags start from these. API limits are in
`api_limits`."""

from __future__ import annotations

from typing import Final

# --- which nodes are KWOK nodes (resolve.KwokNodeRule; --kwok-annotation, --kwok-label) -----------
KWOK_NODE_ANNOTATION: Final = "kwok.x-k8s.io/node"  # what KWOK's controller picks the nodes it manages by
DEFAULT_KWOK_LABELS: Final[tuple[tuple[str, str], ...]] = (("type", "kwok"), ("kwok.x-k8s.io/provider", "kwok"))

# --- the fallback ConfigMap (--configmap-name, --namespace, --key) --------------------------------
DEFAULT_CONFIGMAP_NAME: Final = "dra-kwok-configmap"
DEFAULT_NAMESPACE: Final = "karpenter"
DEFAULT_CONFIGMAP_KEY: Final = "config.yaml"

# --- this installation (--managed-by, --field-manager) --------------------------------------------
DEFAULT_MANAGED_BY: Final = "dra-kwok-driver"  # the managed-by label value on every slice written
DEFAULT_FIELD_MANAGER: Final = "dra-kwok-driver"  # server-side apply; the CLI defaults it to --managed-by
