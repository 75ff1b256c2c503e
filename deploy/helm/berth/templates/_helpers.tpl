{{- define "berth.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "berth.labels" -}}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "berth.selector" -}}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "berth.embedded" -}}
{{- if eq (int .Values.replicaCount) 1 }}{{ if and (not .Values.metadata.url) (not .Values.metadata.existingSecret) }}true{{ end }}{{ end -}}
{{- end -}}

{{- define "berth.check" -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- if and (not .Values.metadata.url) (not .Values.metadata.existingSecret) -}}
{{- fail "replicaCount > 1 needs PostgreSQL: set metadata.url or metadata.existingSecret" -}}
{{- end -}}
{{- if ne .Values.storage.backend "s3" -}}
{{- fail "replicaCount > 1 needs shared blob storage: set storage.backend=s3 and storage.s3.bucket" -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.storage.backend "s3") (not .Values.storage.s3.bucket) -}}
{{- fail "storage.backend=s3 needs storage.s3.bucket" -}}
{{- end -}}
{{- end -}}

{{- /* A volume for the data directory: the embedded database, or filesystem blobs. */ -}}
{{- define "berth.pvc" -}}
{{- if and .Values.persistence.enabled (or (include "berth.embedded" .) (eq .Values.storage.backend "filesystem")) }}true{{ end -}}
{{- end -}}
