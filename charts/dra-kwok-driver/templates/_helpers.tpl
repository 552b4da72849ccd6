{{/* Object name prefix: <release>-<chart>, or <release> when it already contains the chart name. */}}
{{- define "dra-kwok.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dra-kwok.selectorLabels" -}}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dra-kwok.labels" -}}
{{ include "dra-kwok.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "dra-kwok.serviceAccountName" -}}
{{- default (include "dra-kwok.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "dra-kwok.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The managed-by label value of this installation's slices. */}}
{{- define "dra-kwok.managedBy" -}}
{{- default (include "dra-kwok.fullname" .) .Values.controller.managedBy -}}
{{- end -}}

{{/*
nodeSelector, tolerations and affinity of a pod of this chart, at pod-spec indentation (8).
Argument: dict "root" $ "nodeSelector" … "tolerations" … "affinity" …. `nodeExclusions` are ANDed
into every term of the required node affinity (a term of their own when there is none), so a
user's own node affinity cannot let the pod onto a KWOK node by accident: kwok would report the pod
Running (or a Job's pod Completed) without running anything.
*/}}
{{- define "dra-kwok.placement" -}}
{{- $exclusions := .root.Values.nodeExclusions | default (list) -}}
{{- $affinity := deepCopy (.affinity | default (dict)) -}}
{{- if $exclusions }}
{{- $node := get $affinity "nodeAffinity" | default (dict) }}
{{- $required := get $node "requiredDuringSchedulingIgnoredDuringExecution" | default (dict) }}
{{- $terms := get $required "nodeSelectorTerms" | default (list (dict)) }}
{{- $merged := list }}
{{- range $terms }}
{{- $term := deepCopy . }}
{{- $_ := set $term "matchExpressions" (concat (get $term "matchExpressions" | default (list)) $exclusions) }}
{{- $merged = append $merged $term }}
{{- end }}
{{- $_ := set $required "nodeSelectorTerms" $merged }}
{{- $_ := set $node "requiredDuringSchedulingIgnoredDuringExecution" $required }}
{{- $_ := set $affinity "nodeAffinity" $node }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
