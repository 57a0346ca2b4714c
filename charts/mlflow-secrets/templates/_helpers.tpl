{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "mlflow-secrets.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the Service, the MutatingWebhookConfiguration, the ClusterRole and
the Lease are named from it, so two releases never collide.
*/}}
{{- define "mlflow-secrets.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mlflow-secrets.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mlflow-secrets.labels" -}}
helm.sh/chart: {{ include "mlflow-secrets.chart" . }}
{{ include "mlflow-secrets.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "mlflow-secrets.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlflow-secrets.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mlflow-secrets.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mlflow-secrets.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mlflow-secrets.leaseName" -}}
{{- default (printf "%s-operator" (include "mlflow-secrets.fullname" .)) .Values.operator.leaseName | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mlflow-secrets.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
true when the store is SQLite (no database URL Secret).
*/}}
{{- define "mlflow-secrets.sqlite" -}}
{{- if .Values.database.urlSecret.name }}false{{ else }}true{{ end }}
{{- end }}

{{/*
Replica count: the explicit value, else 2 with a database URL and 1 with
SQLite. Fails rendering for more than one replica on SQLite: a SQLite file on
a ReadWriteOnce volume has exactly one writer, and a second pod could neither
mount it nor safely write it.
*/}}
{{- define "mlflow-secrets.replicas" -}}
{{- $sqlite := eq (include "mlflow-secrets.sqlite" .) "true" }}
{{- $replicas := .Values.replicaCount }}
{{- if kindIs "invalid" $replicas }}
{{- $replicas = ternary 1 2 $sqlite }}
{{- end }}
{{- $replicas = int $replicas }}
{{- if and $sqlite (gt $replicas 1) }}
{{- fail (printf "replicaCount=%d with the SQLite store: SQLite supports exactly one operator replica. Set replicaCount to 1, or use PostgreSQL/MySQL with database.urlSecret.name for more replicas." $replicas) }}
{{- end }}
{{- if lt $replicas 1 }}
{{- fail (printf "replicaCount=%d: the operator serves the webhook, which fails closed for labelled pods; at least 1 replica is required." $replicas) }}
{{- end }}
{{- $replicas }}
{{- end }}

{{/*
The store URI for SQLite.
*/}}
{{- define "mlflow-secrets.sqliteUri" -}}
{{- printf "sqlite://%s" .Values.database.sqlite.path }}
{{- end }}

{{/*
Directory of the SQLite file (the data volume's mount path).
*/}}
{{- define "mlflow-secrets.sqliteDir" -}}
{{- dir .Values.database.sqlite.path }}
{{- end }}

{{- define "mlflow-secrets.pvcName" -}}
{{- default (printf "%s-data" (include "mlflow-secrets.fullname" .)) .Values.database.sqlite.persistence.existingClaim }}
{{- end }}
