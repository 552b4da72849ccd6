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
